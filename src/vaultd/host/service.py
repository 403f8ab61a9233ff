"""`vaultd service install|uninstall|status`: vaultd as a login service, no root needed.

The templates are the files in `units/` (which `systemd/` and `launchd/` in the repository
link to), with the interpreter's absolute path filled in, so the service runs the same
vaultd that installed it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

LAUNCHD_LABEL = "dev.vaultd"


def template(name: str) -> str:
    return resources.files("vaultd.host").joinpath("units", name).read_text(encoding="utf-8")


def render(name: str, python: str, home: Path) -> str:
    return template(name).replace("@PYTHON@", python).replace("@HOME@", str(home))


@dataclass
class ServicePlan:
    write: dict[Path, str] = field(default_factory=dict)
    mkdir: list[Path] = field(default_factory=list)
    remove: list[Path] = field(default_factory=list)
    run: list[list[str]] = field(default_factory=list)

    def describe(self) -> str:
        lines: list[str] = [f"mkdir -p {d}" for d in self.mkdir]
        for path, text in self.write.items():
            lines += [f"# write {path}", text.rstrip(), ""]
        lines += [f"rm -f {p}" for p in self.remove]
        lines += [" ".join(cmd) for cmd in self.run]
        return "\n".join(lines)


def _systemd_dir(home: Path, env: dict[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(base) / "systemd" / "user"


def plan(
    action: str,
    *,
    platform: str = sys.platform,
    python: str = sys.executable,
    home: Path | None = None,
    env: dict[str, str] | None = None,
    uid: int | None = None,
    socket_activation: bool = False,
) -> ServicePlan:
    home = home or Path.home()
    env = dict(os.environ) if env is None else env
    uid = os.getuid() if uid is None else uid
    python = str(Path(python).absolute())
    if platform == "darwin":
        agent = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        domain = f"gui/{uid}"
        if action == "install":
            return ServicePlan(
                write={agent: render("dev.vaultd.plist", python, home)},
                mkdir=[agent.parent, home / "Library" / "Logs" / "vaultd"],
                run=[["launchctl", "bootstrap", domain, str(agent)]],
            )
        if action == "uninstall":
            return ServicePlan(
                remove=[agent], run=[["launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"]]
            )
        return ServicePlan(run=[["launchctl", "print", f"{domain}/{LAUNCHD_LABEL}"]])
    units = _systemd_dir(home, env)
    service, sock = units / "vaultd.service", units / "vaultd.socket"
    if action == "install":
        write = {service: render("vaultd.service", python, home)}
        if socket_activation:
            write[sock] = render("vaultd.socket", python, home)
        start = "vaultd.socket" if socket_activation else "vaultd.service"
        return ServicePlan(
            write=write,
            mkdir=[units],
            run=[
                ["systemctl", "--user", "daemon-reload"],
                ["systemctl", "--user", "enable", "--now", start],
            ],
        )
    if action == "uninstall":
        return ServicePlan(
            remove=[service, sock],
            run=[
                ["systemctl", "--user", "disable", "--now", "vaultd.socket", "vaultd.service"],
                ["systemctl", "--user", "daemon-reload"],
            ],
        )
    return ServicePlan(
        run=[["systemctl", "--user", "status", "--no-pager", "vaultd.service", "vaultd.socket"]]
    )
