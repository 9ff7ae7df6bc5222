"""HTCondor daemons started inside a baked tree, tracked by pid, always stopped."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import jinja2

from ..errors import SeedError
from ..paths import TEMPLATES_DIR
from .chroot import BASE_ENV, chroot_argv, kill_processes_in, run_in, signals_deferred


LOGIN_USER = "alice"  # the scientist's unprivileged account on the seed


class SmokeTestFailed(SeedError):
    """The seed booted from the image does not behave as a pool's central manager and submit node."""


def wait_for(what: str, check, timeout: float, interval: float = 0.25):
    """Poll `check` until it returns something truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def render_local(template: str, **context) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR / "local"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(template).render(context)


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


class Pool:
    """condor_master processes in the tree; `stop()` ends them all (workers first, then the seed)."""

    def __init__(self, root: Path, log_dir: Path, prefix: list[str] = ()):
        self.root = root
        self.log_dir = log_dir
        self.prefix = list(prefix)  # e.g. enter the instance's network namespace
        self.masters: dict[str, subprocess.Popen] = {}

    def run(self, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
        """A command in the tree, in the pool's network."""
        return run_in(self.root, cmd, prefix=self.prefix, **kwargs)

    def condor(self, args: list[str], user: str | None = None, config: str | None = None,
               input: str | None = None, timeout: float = 60, elsewhere: bool = False,
               env: dict | None = None) -> subprocess.CompletedProcess:
        """Run an HTCondor tool in the tree (as `user`; `elsewhere`: as if from another machine)."""
        env = {**({"CONDOR_CONFIG": config} if config else {}), **(env or {})}
        if user:
            args = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                    "env", f"HOME=/home/{user}", f"USER={user}", *args]
        return self.run(args, env=env, check=False, capture_output=True, text=True, input=input,
                        timeout=timeout, elsewhere=elsewhere)

    def config_val(self, knob: str, user: str | None = None) -> str:
        """A knob's value as the seed's configuration (as `user`, with their user_config) gives it."""
        return self.condor(["condor_config_val", knob], user=user).stdout.strip()

    def start_master(self, name: str, config: str | None = None, elsewhere: bool = False) -> None:
        env = {**BASE_ENV, **({"CONDOR_CONFIG": config} if config else {})}
        with open(self.log_dir / f"master-{name}.out", "w") as out:
            # A new session: Ctrl-C reaches us, and we stop the daemons in order.
            self.masters[name] = subprocess.Popen(chroot_argv(self.root, ["/usr/sbin/condor_master", "-f"], elsewhere,
                                                              self.prefix),
                                                  env=env, stdout=out, stderr=subprocess.STDOUT,
                                                  start_new_session=True)

    def stop(self, timeout: float = 15.0) -> None:
        """Workers first (their startds say goodbye to a live collector), then the seed."""
        with signals_deferred():
            workers = [p for n, p in self.masters.items() if n != "seed"]
            for group in (workers, [self.masters.get("seed")]):
                group = [p for p in group if p is not None and p.poll() is None]
                for p in group:
                    p.send_signal(signal.SIGQUIT)  # condor_master: fast shutdown
                deadline = time.monotonic() + timeout
                for p in group:
                    try:
                        p.wait(max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
            kill_processes_in(self.root)

    def lay_out_worker(self, name: str, address: str, port: int, config_file: str, config: str) -> str:
        """An execute node's /etc/NAME (base config + `config` as config.d/`config_file`) and
        /var/lib/NAME; returns its CONDOR_CONFIG path."""
        etc = self.root / "etc" / name
        write(etc / "condor_config", render_local("annex-worker-base.config.j2", name=name, address=address, port=port))
        write(etc / "config.d" / config_file, config)
        dirs = " ".join(f"/var/lib/{name}/{d}" for d in ("log", "spool", "execute", "lock", "run", "cred_dir"))
        run_in(self.root, ["sh", "-c", f"mkdir -p {dirs} && chown -R condor:condor /var/lib/{name} "
                                       f"&& chmod 0700 /var/lib/{name}/cred_dir"], capture_output=True)
        return f"/etc/{name}/condor_config"

    def add_client(self, name: str, address: str, collector: str) -> str:
        """A stranger's client configuration on another address; returns its CONDOR_CONFIG path."""
        write(self.root / "etc" / name / "condor_config",
              render_local("outsider-client.config.j2", name=name, address=address, collector=collector))
        run_in(self.root, ["install", "-d", f"/var/lib/{name}/log"])
        return f"/etc/{name}/condor_config"

    def add_worker(self, name: str, address: str, port: int, collector: str, kind: str,
                   password_from: Path | None = None, token: str | None = None) -> str:
        """Lay out a gen-1 annex worker (condor_annex's config); returns its CONDOR_CONFIG path.

        kind: "password" (a copy of the seed's pool password), "wrong-password" (its own), "token".
        """
        etc = self.root / "etc" / name
        template = "annex-token.config.j2" if kind == "token" else "annex-password.config.j2"
        config = self.lay_out_worker(name, address, port, "00ec2-dynamic.config",
                                     render_local(template, name=name, collector=collector))
        password = etc / "config.d/password_file.pl"
        if kind == "password":
            shutil.copyfile(password_from, password)
            password.chmod(0o600)
        elif kind == "wrong-password":
            import secrets
            run_in(self.root, ["condor_store_cred", "-c", "add", "-f", f"/etc/{name}/config.d/password_file.pl",
                               "-i", "-"], input=secrets.token_urlsafe(32).encode(), capture_output=True)
        elif kind == "token":
            write(etc / "tokens.d/pool", token, 0o600)
            (etc / "tokens.d").chmod(0o700)
        return config
