"""Checking the strategies: the race scenarios under the explorer, and real-thread stress.

- ``_scenarios``: one scenario per race window R1-R6 (docs/lifetime.md), and plain use, each
  ending with the heap's verdict; ``explore_scenario``, ``replay_scenario``.
- ``_stress``: ``run_stress``: workers race open/write/read/ioctl/poll/close against hotplug
  and faults, with a watchdog.
- ``_stress_records``: a stress run's configuration, violations, latencies, snapshots and
  report, and the errnos usblp may give each operation.

Imports hazard, the core, the driver, the host and virtual hardware: never pyusb, rich or the
CLI.
"""
