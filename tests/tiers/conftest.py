"""What the opt-in tiers share: the switches that turn them on."""

from __future__ import annotations

import os

KERNEL_ENABLED = os.environ.get("USBLP_EMU_KERNEL") == "1"  # the QEMU rig (tools/kernel_rig.py)
