"""Render a recipe's templates into a file tree: what goes into the image, plus the bake script.

Pure: no I/O except reading templates, until `RenderedTree.write()` is asked to put it on disk.
Every file carries its mode and owner, so the bake script and the local target lay it down alike.
"""
from __future__ import annotations

import json
import shlex
import stat
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import jinja2

from .errors import ValidationError
from .leak_rules import shell_functions
from .paths import TEMPLATES_DIR
from .recipe import Recipe

# Fixed locations inside the image; templates read them from the `paths` context.
IMAGE_PATHS = {
    "libexec": "/usr/libexec/condor-seed",
    "env_file": "/etc/default/condor-seed",
    "runtime_config": "/etc/condor/condor-seed-runtime.config",
    "config_dir": "/etc/condor/config.d",
    "imds_motd": "/run/motd.d/condor-seed-imds",  # login message while IMDSv1 is refused
}
# Console lines the builder and the smoke tests look for.
MARKERS = {
    "bake": "CONDOR-SEED-BAKE:",
    "boot": "CONDOR-SEED-BOOT:",
    "first_boot": "CONDOR-SEED-FIRST-BOOT:",
    "ready": "CONDOR-SEED-READY:",
}
HEREDOC = "CONDOR_SEED_FILE_EOF"
BAKE_SCRIPT = "bake.sh"
PACKAGE_STEPS = "bake/debian-packages.sh.j2"

# template (relative to templates/) -> (path in the image, mode)
IMAGE_FILES: list[tuple[str, str, int]] = [
    ("condor/config.d/10-seed-network.config.j2", f"{IMAGE_PATHS['config_dir']}/10-seed-network.config", 0o644),
    ("condor/config.d/20-seed-central-manager.config.j2", f"{IMAGE_PATHS['config_dir']}/20-seed-central-manager.config", 0o644),
    ("condor/config.d/21-seed-submit.config.j2", f"{IMAGE_PATHS['config_dir']}/21-seed-submit.config", 0o644),
    ("condor/config.d/30-seed-annex-security.config.j2", f"{IMAGE_PATHS['config_dir']}/30-seed-annex-security.config", 0o644),
    ("condor/config.d/40-seed-annex-defaults.config.j2", f"{IMAGE_PATHS['config_dir']}/40-seed-annex-defaults.config", 0o644),
    ("condor/config.d/99-seed-runtime.config.j2", f"{IMAGE_PATHS['config_dir']}/99-seed-runtime.config", 0o644),
    ("boot/condor-seed-public-ip.sh.j2", f"{IMAGE_PATHS['libexec']}/condor-seed-public-ip", 0o755),
    ("boot/condor-seed-first-boot.sh.j2", f"{IMAGE_PATHS['libexec']}/condor-seed-first-boot", 0o755),
    ("boot/condor-seed-annex-users.sh.j2", f"{IMAGE_PATHS['libexec']}/condor-seed-annex-users", 0o755),
    ("boot/condor-seed-ready.sh.j2", f"{IMAGE_PATHS['libexec']}/condor-seed-ready", 0o755),
    ("boot/condor-seed-public-ip.service.j2", "/etc/systemd/system/condor-seed-public-ip.service", 0o644),
    ("boot/condor-seed-first-boot.service.j2", "/etc/systemd/system/condor-seed-first-boot.service", 0o644),
    ("boot/condor-seed-ready.service.j2", "/etc/systemd/system/condor-seed-ready.service", 0o644),
]
# Boot order matters: secrets and the public IP before condor, the ready report after it.
UNITS = ["condor-seed-first-boot.service", "condor-seed-public-ip.service", "condor-seed-ready.service"]


@dataclass(frozen=True)
class RenderedFile:
    path: str  # absolute path in the image, or a bare name for files that stay outside it
    content: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"

    @property
    def mode_octal(self) -> str:
        return f"{self.mode:04o}"

    @property
    def is_script(self) -> bool:
        return self.content.startswith("#!")


@dataclass(frozen=True)
class RenderedTree:
    recipe: Recipe
    image_files: tuple[RenderedFile, ...]
    bake_script: RenderedFile
    package_steps: str = ""  # Debian: the bake's apt steps alone (templates/bake/debian-packages.sh.j2)

    def file(self, path: str) -> RenderedFile:
        for f in self.image_files + (self.bake_script,):
            if f.path == path or PurePosixPath(f.path).name == path:
                return f
        raise KeyError(path)

    @property
    def scripts(self) -> list[RenderedFile]:
        return [f for f in self.image_files + (self.bake_script,) if f.is_script]

    def write(self, out_dir: Path) -> Path:
        """Write `rootfs/<image paths>`, `bake.sh` and `files.json` (modes, owners) under out_dir."""
        out_dir = Path(out_dir)
        listing = []
        for f in self.image_files:
            target = out_dir / "rootfs" / f.path.lstrip("/")
            _write(target, f)
            listing.append({k: v for k, v in asdict(f).items() if k != "content"} | {"mode": f.mode_octal})
        _write(out_dir / BAKE_SCRIPT, self.bake_script)
        (out_dir / "files.json").write_text(
            json.dumps({"recipe": self.recipe.name, "bake_script": BAKE_SCRIPT, "files": listing}, indent=2) + "\n"
        )
        return out_dir


def _write(target: Path, f: RenderedFile) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f.content)
    target.chmod(stat.S_IMODE(f.mode))


def shell_word(value: object) -> str:
    """`{{ x | sh }}`: one shell word, whatever the value holds (the schema already narrows it)."""
    return shlex.quote(str(value))


def condor_value(value: object) -> str:
    """`{{ x | condor }}`: a value for one HTCondor config line. The config language has no quoting, so
    what could start another line (a newline, a trailing backslash continues the line) is refused."""
    text = str(value)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in text) or text.endswith("\\"):
        raise ValidationError(f"{text!r} cannot be an HTCondor config value (control character or line continuation)")
    return text


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(sh=shell_word, condor=condor_value)
    return env


def render(recipe: Recipe) -> RenderedTree:
    env = _environment()
    context = recipe.context(paths=IMAGE_PATHS, markers=MARKERS)
    image_files = []
    for template, path, mode in IMAGE_FILES:
        content = env.get_template(template).render(context)
        if HEREDOC in content:
            raise ValidationError(f"templates/{template}: contains the bake script's heredoc delimiter {HEREDOC}")
        if not content.endswith("\n"):
            content += "\n"
        image_files.append(RenderedFile(path=path, content=content, mode=mode))
    bake = env.get_template("bake/bake.sh.j2").render(
        context | {"files": image_files, "units": UNITS, "heredoc": HEREDOC, "leak_check": shell_functions()}
    )
    package_steps = env.get_template(PACKAGE_STEPS).render(context) if recipe.os_family == "debian" else ""
    return RenderedTree(recipe, tuple(image_files), RenderedFile(BAKE_SCRIPT, bake, 0o755), package_steps)
