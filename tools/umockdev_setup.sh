#!/usr/bin/env bash
# Install what the umockdev tier (tests/tiers/test_umockdev.py) needs from Debian: the umockdev preload
# library, its GObject introspection data and python3-gi for the device side, which runs under
# Debian's /usr/bin/python3 (gi is not on PyPI in a form that finds the system typelibs), and the
# distribution's libusb: the tier runs every scenario on it (udev backend, what default_backend()
# picks on a desktop) as well as on the one libusb-package bundles (netlink backend, what a user
# without a system libusb gets).
#
# Idempotent: does nothing when everything is there; runs 'apt-get update' only when an install
# without it fails (a fresh machine has no package lists). Exits non-zero with one loud line when it
# cannot, so CI fails instead of skipping the tier.
set -euo pipefail

packages=(umockdev libumockdev0 gir1.2-umockdev-1.0 python3-gi libusb-1.0-0)

fail() {
    echo "umockdev_setup: FAIL: $*" >&2
    exit 1
}

missing() {  # the packages of $packages that dpkg does not list as installed
    local p
    for p in "${packages[@]}"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
            echo "$p"
        fi
    done
}

check() {  # what the tier actually uses, beyond dpkg's word
    [ -x /usr/bin/python3 ] || fail "/usr/bin/python3 is missing"
    /usr/bin/python3 - <<'EOF' || fail "/usr/bin/python3 cannot load UMockdev 1.0 through gi"
import gi
gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: F401
EOF
    local preload
    preload=$(/sbin/ldconfig -p | sed -n 's/.*libumockdev-preload\.so\.0 .*=> //p' | head -n 1)
    [ -n "$preload" ] || fail "libumockdev-preload.so.0 is not in the linker cache"
    /sbin/ldconfig -p | grep -q 'libusb-1\.0\.so\.0 ' || fail "libusb-1.0.so.0 is not in the linker cache"
    echo "umockdev_setup: ok (preload $preload)"
}

mapfile -t todo < <(missing)
if [ "${#todo[@]}" -eq 0 ]; then
    check
    exit 0
fi

command -v apt-get >/dev/null || fail "no apt-get: install ${todo[*]} by hand (Debian/Ubuntu)"
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        apt=(sudo apt-get)
    else
        fail "not root and no sudo: cannot install ${todo[*]}"
    fi
else
    apt=(apt-get)
fi

export DEBIAN_FRONTEND=noninteractive
echo "umockdev_setup: installing ${todo[*]}"
if ! "${apt[@]}" install -y -q --no-install-recommends "${todo[@]}" >/dev/null 2>&1; then
    # Most likely stale or absent package lists: refresh them once and try again, loudly.
    "${apt[@]}" update -q >/dev/null || fail "apt-get update failed"
    "${apt[@]}" install -y -q --no-install-recommends "${todo[@]}" \
        || fail "apt-get install ${todo[*]} failed"
fi
mapfile -t todo < <(missing)
[ "${#todo[@]}" -eq 0 ] || fail "still missing after install: ${todo[*]}"
check
