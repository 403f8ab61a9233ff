"""The one root step: 169.254.169.254:80 on this machine, redirected to the user's listener.

Linux: a system oneshot unit adds 169.254.169.254/32 to `lo` and loads an nftables table
that redirects local TCP to 169.254.169.254:80 onto 127.0.0.1:PORT. macOS: a LaunchDaemon
adds the lo0 alias and loads a pf anchor (under `com.apple/`, which the stock pf.conf
already evaluates, so the system's own rules are left alone).

The daemon itself never runs as root; uninstall removes exactly what install added.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

IMDS_ADDRESS = "169.254.169.254"
NFT_TABLE = "vaultd"
PF_ANCHOR = "com.apple/vaultd"
LINUX_UNIT = Path("/etc/systemd/system/vaultd-network.service")
LINUX_RULES = Path("/etc/vaultd/imds-redirect.nft")
MAC_PLIST = Path("/Library/LaunchDaemons/dev.vaultd.network.plist")
MAC_RULES = Path("/etc/vaultd/imds-redirect.pf")


def nft_ruleset(port: int) -> str:
    return f"""\
# Written by `vaultd network install`: local connections to {IMDS_ADDRESS}:80 go to the
# user's vaultd on 127.0.0.1:{port}. Remove with `vaultd network uninstall`.
table ip {NFT_TABLE} {{
  chain output {{
    type nat hook output priority -100; policy accept;
    ip daddr {IMDS_ADDRESS} tcp dport 80 redirect to :{port}
  }}
}}
"""


def alias_commands() -> list[list[str]]:
    return [["ip", "addr", "replace", f"{IMDS_ADDRESS}/32", "dev", "lo"]]


def linux_unit(port: int) -> str:
    return f"""\
# Written by `vaultd network install`.
[Unit]
Description=vaultd: {IMDS_ADDRESS}:80 on lo, redirected to 127.0.0.1:{port}
After=network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/{" ".join(alias_commands()[0])}
ExecStart=/usr/sbin/nft -f {LINUX_RULES}
ExecStop=-/usr/sbin/nft delete table ip {NFT_TABLE}
ExecStop=-/usr/sbin/ip addr del {IMDS_ADDRESS}/32 dev lo

[Install]
WantedBy=multi-user.target
"""


def pf_rules(port: int) -> str:
    return f"""\
# Written by `vaultd network install`.
rdr pass on lo0 inet proto tcp from any to {IMDS_ADDRESS} port 80 -> 127.0.0.1 port {port}
"""


def mac_plist() -> str:
    script = (
        f"/sbin/ifconfig lo0 alias {IMDS_ADDRESS}; "
        f"/sbin/pfctl -a {PF_ANCHOR} -f {MAC_RULES}; /sbin/pfctl -E"
    )
    return f"""\
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>dev.vaultd.network</string>
  <key>ProgramArguments</key>
  <array><string>/bin/sh</string><string>-c</string><string>{script}</string></array>
  <key>RunAtLoad</key><true/>
</dict>
</plist>
"""


@dataclass
class Change:
    """Files to write (or remove) and commands to run, in order."""

    write: dict[Path, str] = field(default_factory=dict)
    remove: list[Path] = field(default_factory=list)
    run: list[list[str]] = field(default_factory=list)

    def describe(self) -> str:
        lines: list[str] = []
        for path, text in self.write.items():
            lines += [f"# write {path}", text.rstrip(), ""]
        for path in self.remove:
            lines.append(f"rm -f {path}")
        lines += [" ".join(cmd) for cmd in self.run]
        return "\n".join(lines)


def install(port: int, platform: str = sys.platform) -> Change:
    if platform == "darwin":
        return Change(
            write={MAC_RULES: pf_rules(port), MAC_PLIST: mac_plist()},
            run=[["launchctl", "bootstrap", "system", str(MAC_PLIST)]],
        )
    return Change(
        write={LINUX_RULES: nft_ruleset(port), LINUX_UNIT: linux_unit(port)},
        run=[
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", LINUX_UNIT.name],
        ],
    )


def uninstall(platform: str = sys.platform) -> Change:
    if platform == "darwin":
        return Change(
            remove=[MAC_PLIST, MAC_RULES],
            run=[
                ["launchctl", "bootout", "system/dev.vaultd.network"],
                ["pfctl", "-a", PF_ANCHOR, "-F", "all"],
                ["ifconfig", "lo0", "-alias", IMDS_ADDRESS],
            ],
        )
    return Change(
        remove=[LINUX_UNIT, LINUX_RULES],
        run=[
            ["systemctl", "disable", "--now", LINUX_UNIT.name],
            ["systemctl", "daemon-reload"],
        ],
    )


def apply(change: Change) -> list[str]:
    """Carry out a change; returns the problems met (empty when all went well)."""
    problems: list[str] = []
    for path, text in change.write.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    # Stop before removing files, so the unit's ExecStop still finds its rules.
    for cmd in change.run:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{' '.join(cmd)}: {exc}")
            continue
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            problems.append(f"{' '.join(cmd)}: {detail[-1] if detail else done.returncode}")
    for path in change.remove:
        path.unlink(missing_ok=True)
    return problems
