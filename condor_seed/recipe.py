"""Load and validate image recipes (YAML), before anything else happens.

A recipe file names one image variant. It is merged over its parent (`extends:`, default
`defaults`), then checked as a whole: every problem is reported as
``FILE: FIELD: what is wrong`` so the user can fix it without reading code.
"""
from __future__ import annotations

import copy
import datetime as dt
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import jinja2
import jsonschema
import yaml

from .errors import RecipeError
from .paths import RECIPES_DIR

DEFAULTS_NAME = "defaults"
ARCHITECTURES = ("x86_64", "arm64")
REGION_RE = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$"
VERSION_RE = r"^\d+\.\d+(\.\d+)?$"
FINGERPRINT_RE = r"^[0-9A-F]{40}$"  # an OpenPGP v4 fingerprint as gpg prints it
USER_RE = r"^[a-z_][a-z0-9_-]{0,30}$"

MAX_RECIPE_BYTES = 64 * 1024  # a recipe is a page of YAML; anything bigger is a mistake (or an attack)
RECIPE_NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,63}$"
RESERVED_TAG_RE = r"^(?i:condor-seed:|aws:)"  # what the pipeline sets itself (or AWS refuses)

_str = {"type": "string", "minLength": 1, "pattern": r"^[^\x00-\x1f\x7f]*$",
        "description": "one line of text (no newline or control character)"}


def _safe(pattern: str, description: str, max_length: int = 255) -> dict:
    """A string that reaches an HTCondor config file or a shell script: one line of a safe character set."""
    return {"type": "string", "pattern": pattern, "maxLength": max_length, "description": description}


# Fields the templates put into config.d or bake.sh: the schema allows only these characters (the
# templates quote them as well; see render.py's filters).
_ABS_PATH = _safe(r"^(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$",
                  "an absolute path of letters, digits and ._- (no spaces, quotes, $ or ..)", 200)
_HOST = _safe(r"^(\$\([A-Z][A-Z0-9_]*\)|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)$",
              "a host name, an IPv4 address or one HTCondor macro like $(FULL_HOSTNAME)", 253)
_INTERFACE = _safe(r"^[A-Za-z0-9*.:_-]+$", "an interface name, an IP address or a pattern like * or 10.*", 64)
_HTTPS_URL = _safe(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)*/?$",
                   "an https:// URL of letters, digits and ._~-/ (no spaces, quotes or $)", 200)
_obj = lambda props, required=(): {  # noqa: E731 - tiny schema helper
    "type": "object",
    "properties": props,
    "required": list(required),
    "additionalProperties": False,
}

SCHEMA: dict[str, Any] = _obj(
    {
        "extends": _str,
        "description": _str,
        "target": {"enum": ["ec2", "local"]},
        "os": _obj(
            {
                "family": {"enum": ["rhel", "debian"]},
                # Debian's unstable suite (sid) never gets a number.
                "version": {"type": "string", "pattern": r"^(\d+|unstable)$"},
                "codename": _safe(r"^[a-z]+$", "a release code name like trixie", 32),
            },
            ["family", "version"],
        ),
        "architecture": {"enum": list(ARCHITECTURES)},
        "instance_type": {"type": "string", "pattern": r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"},
        "root_volume": _obj(
            {
                "size_gib": {"type": "integer", "minimum": 8, "maximum": 16384},
                "volume_type": {"enum": ["gp3"]},
            },
            ["size_gib", "volume_type"],
        ),
        "base_image": _obj({"owner": {"type": "string", "pattern": r"^\d{12}$"}, "name_pattern": _str}, ["owner"]),
        "htcondor": _obj(
            {
                "channel": {"type": "string", "pattern": r"^(\d+\.(\d+|x)|current|debian)$"},
                "version": {"type": "string", "pattern": VERSION_RE},
                "repo_base": _HTTPS_URL,
                # the distribution's package name: `condor` (HTCondor's RPMs, Debian sid), `htcondor` (Debian 13)
                "package": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9.+-]+$"},
            },
            ["channel", "version", "repo_base", "package"],
        ),
        "network": _obj({"interface": _INTERFACE, "condor_host": _HOST}, ["interface", "condor_host"]),
        "pool": _obj(
            {
                "password_file": _ABS_PATH,
                "signing_key_file": _ABS_PATH,
                # members get their own copy of the pool password for condor_annex
                "annex_group": {"type": "string", "pattern": USER_RE},
            },
            ["password_file", "signing_key_file", "annex_group"],
        ),
        # the image's default login user (made by cloud-init on EC2): may run condor_annex
        "login_user": {"type": "string", "pattern": USER_RE},
        "ami": _obj({"name": _str, "description": _str}, ["name", "description"]),
        # Third-party repository keys the bake imports only when their fingerprint is listed here (a RHEL
        # recipe must pin its EL version and HTCondor channel: _check_signing_keys).
        "signing_keys": _obj(
            {
                "epel": {"type": "object", "additionalProperties": {"type": "string", "pattern": FINGERPRINT_RE}},
                "htcondor": {"type": "object", "additionalProperties": {
                    "type": "array", "items": {"type": "string", "pattern": FINGERPRINT_RE}, "uniqueItems": True}},
            },
            ["epel", "htcondor"],
        ),
        "tags": {
            "type": "object",
            "maxProperties": 40,  # EC2 allows 50 per resource; the pipeline adds its own
            "propertyNames": {"minLength": 1, "maxLength": 128, "not": {"pattern": RESERVED_TAG_RE}},
            "additionalProperties": {"type": "string", "maxLength": 256},
        },
        "regions": {"type": "array", "items": {"type": "string", "pattern": REGION_RE}, "uniqueItems": True},
        # A published seed older than this is rebuilt (kept only if its packages changed).
        "max_age_days": {"type": "integer", "minimum": 1, "maximum": 365},
        "publish": _obj(
            {
                "public": {"type": "boolean"},
                "deprecate_after_days": {"type": ["integer", "null"], "minimum": 1},
                "ssm_parameter": {"type": "string", "pattern": r"^/[A-Za-z0-9_.\-/{}% ]+$"},
                "keep": {"type": "integer", "minimum": 1, "maximum": 5},
                "prune": {"type": "boolean"},
            },
            ["public", "keep", "prune"],
        ),
    },
    [
        "description", "target", "os", "architecture", "instance_type", "root_volume", "base_image",
        "htcondor", "network", "pool", "login_user", "ami", "tags", "regions", "publish",
    ],
)
# An EC2 recipe must say which base image to start from and where it goes.
SCHEMA["allOf"] = [
    {
        "if": {"properties": {"target": {"const": "ec2"}}},
        "then": {
            "properties": {
                "base_image": {"required": ["owner", "name_pattern"]},
                "regions": {"minItems": 1},
                "os": {"properties": {"family": {"const": "rhel"}}},
            },
            "required": ["signing_keys"],
        },
    },
    {
        "if": {"properties": {"publish": {"properties": {"public": {"const": True}}}}},
        "then": {"properties": {"publish": {"required": ["ssm_parameter"]}}},
    },
]


def _merge(base: dict, override: dict) -> dict:
    """Deep merge: mappings merge key by key, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _field(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


_MISSING = object()


def _at(dotted: str, default: Any = _MISSING, copy_as: Callable[[Any], Any] | None = None) -> property:
    """A read-only accessor for one field of the merged recipe, e.g. `_at("pool.password_file")`.
    `default` is returned when an optional field is absent; `copy_as` (list, dict) hands out a copy."""
    keys = dotted.split(".")

    def get(self: "Recipe") -> Any:
        value: Any = self.data
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                if default is _MISSING:
                    raise KeyError(f"{self.name}: recipe has no {dotted}")
                return default
            value = value[key]
        return copy_as(value) if copy_as else value

    get.__doc__ = f"recipe field `{dotted}`"
    return property(get)


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: `data` is the merged mapping; code reads it only through the accessors below.

    Adding a schema field? Add one line here, e.g. `swap_gib = _at("root_volume.swap_gib", 0)`."""

    name: str
    path: Path
    data: dict[str, Any]

    target = _at("target")
    architecture = _at("architecture")
    os_family = _at("os.family")
    os_version = _at("os.version")
    os_codename = _at("os.codename", None)  # Debian suite; the local target needs it
    instance_type = _at("instance_type")
    regions = _at("regions", copy_as=list)
    tags = _at("tags", copy_as=dict)
    base_image = _at("base_image", copy_as=dict)
    base_image_owner = _at("base_image.owner")
    base_image_name_pattern = _at("base_image.name_pattern")
    root_volume = _at("root_volume")
    root_volume_gib = _at("root_volume.size_gib")
    root_volume_type = _at("root_volume.volume_type")
    htcondor_series = _at("htcondor.version")  # e.g. "24.0" as written; `htcondor_version` is the (major, minor)
    htcondor_package = _at("htcondor.package")  # what the bake script installs
    network_interface = _at("network.interface")
    pool_password_file = _at("pool.password_file")
    pool_signing_key_file = _at("pool.signing_key_file")
    annex_group = _at("pool.annex_group")  # its members get their own copy of the pool password
    login_user = _at("login_user")  # the image's default login user; may run condor_annex
    public = property(lambda self: bool(self.data["publish"]["public"]))
    deprecate_after_days = _at("publish.deprecate_after_days", None)
    keep = _at("publish.keep")
    prune_on_publish = property(lambda self: bool(self.data["publish"].get("prune")))
    htcondor_channel = _at("htcondor.channel")  # the repository series, e.g. "24.0", or "debian"
    htcondor_repo_base = _at("htcondor.repo_base")
    max_age_days = _at("max_age_days", 7)  # days before a published seed is rebuilt to check for errata

    @cached_property
    def htcondor_version(self) -> tuple[int, int]:
        major, minor = self.htcondor_series.split(".")[:2]
        return int(major), int(minor)

    @property
    def annex_generation(self) -> str:
        """`condor_annex` (≤ 24.0 LTS, pool password) or `htcondor-annex` (24.11+: HPC_ANNEX, IDTOKENS)."""
        return "htcondor-annex" if self.htcondor_version >= (24, 11) else "condor_annex"

    @property
    def supports_idtokens(self) -> bool:
        return self.htcondor_version >= (9, 0)

    @property
    def auth_methods(self) -> dict[str, list[str]]:
        """Authentication methods the seed offers per permission level (DAEMON, NEGOTIATOR, CLIENT).

        Annex nodes prove pool membership with the pool password or a token. For `htcondor annex`
        the login user's `condor_token_fetch` (what `htcondor annex create` runs first) is a
        DAEMON-level command, so DAEMON also offers FS: it proves only a local user (the client must
        create a file in the seed's own /tmp), never a client on another machine.
        """
        pool = ["IDTOKENS", "PASSWORD"] if self.supports_idtokens else ["PASSWORD"]
        daemon = ["FS", *pool] if self.annex_generation == "htcondor-annex" else pool
        return {"DAEMON": daemon, "NEGOTIATOR": pool, "CLIENT": ["FS", *pool]}

    def context(self, **extra: Any) -> dict[str, Any]:
        """Template context: the recipe's data plus derived facts."""
        ctx = copy.deepcopy(self.data)
        ctx.update(
            recipe=self.name,
            annex_generation=self.annex_generation,
            supports_idtokens=self.supports_idtokens,
            auth_methods=self.auth_methods,
        )
        ctx.update(extra)
        return ctx

    def render_text(self, template: str, **extra: Any) -> str:
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
        return env.from_string(template).render(self.context(**extra))

    def ami_name(self, build_date: str) -> str:
        return self.render_text(self.data["ami"]["name"], build_date=build_date)

    def ami_description(self) -> str:
        return self.render_text(self.data["ami"]["description"], build_date="")

    def ssm_parameter(self) -> str | None:
        template = self.data["publish"].get("ssm_parameter")
        return self.render_text(template) if template else None


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, refusing what no recipe is: huge, binary, or not a file at all."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise RecipeError(f"{path}: is not a file")
        if size > MAX_RECIPE_BYTES:
            raise RecipeError(f"{path}: is {size:,} bytes; a recipe may be at most {MAX_RECIPE_BYTES:,}")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None


def _read_yaml(path: Path) -> dict:
    text = _read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise RecipeError(f"{path}: {where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: (top level): must be a mapping of keys, got {type(data).__name__}")
    return data


def _resolve(name: str, recipes_dir: Path, seen: tuple[str, ...] = ()) -> dict:
    """Return the recipe merged over its ancestors (by `extends:`)."""
    if name in seen:
        raise RecipeError(f"{recipes_dir / (name + '.yaml')}: extends: cycle {' -> '.join(seen + (name,))}")
    path = recipes_dir / f"{name}.yaml"
    own = _read_yaml(path)
    if name == DEFAULTS_NAME:
        return own
    parent = own.get("extends", DEFAULTS_NAME)
    if not isinstance(parent, str) or not (recipes_dir / f"{parent}.yaml").exists():
        raise RecipeError(f"{path}: extends: no recipe named {parent!r} in {recipes_dir}")
    merged = _merge(_resolve(parent, recipes_dir, seen + (name,)), own)
    merged.pop("extends", None)
    return merged


def _check_templates(recipe: Recipe) -> None:
    checks = {
        "ami.name": lambda: recipe.ami_name(dt.date.today().strftime("%Y%m%d-%H%M%S")),
        "ami.description": recipe.ami_description,
        "publish.ssm_parameter": recipe.ssm_parameter,
    }
    for field, render in checks.items():
        try:
            value = render()
        except jinja2.TemplateError as exc:
            raise RecipeError(f"{recipe.path}: {field}: template does not render ({exc})") from None
        if field == "ami.name" and not re.fullmatch(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}", value):
            raise RecipeError(f"{recipe.path}: ami.name: renders to {value!r}, not a valid AMI name")
        if field == "ami.description" and len(value) > 255:
            raise RecipeError(f"{recipe.path}: ami.description: longer than 255 characters")


def _check_signing_keys(recipe: Recipe) -> None:
    """A RHEL bake trusts the EPEL and HTCondor repositories only by a pinned key: a recipe without
    the pin for its EL version or HTCondor series is refused here, not when an instance fails to bake."""
    if recipe.os_family != "rhel":
        return  # Debian's apt checks its packages with the archive keyring
    keys = recipe.data.get("signing_keys", {})
    needed = {"epel": recipe.os_version, "htcondor": recipe.htcondor_channel}
    for kind, series in needed.items():
        if not keys.get(kind, {}).get(series):
            known = ", ".join(sorted(k for k, pin in keys.get(kind, {}).items() if pin)) or "none"
            raise RecipeError(f"{recipe.path}: signing_keys.{kind}: no pinned key fingerprint for {series!r} "
                              f"(pinned: {known}); add the publisher's fingerprint, checked against two sources")


def load_recipe(name_or_path: str | Path, recipes_dir: Path = RECIPES_DIR) -> Recipe:
    """Load one recipe by name (``rhel9-x86_64``) or path; raise RecipeError with one clear line."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.parent != Path("."):
        recipes_dir, name = candidate.parent, candidate.stem
    else:
        name = str(name_or_path)
    path = recipes_dir / f"{name}.yaml"
    if not re.fullmatch(RECIPE_NAME_RE, name):
        # The name reaches the bake script and file names: lower-case letters, digits and ._- only.
        raise RecipeError(f"{path}: recipe name {name!r} must be lower-case letters, digits and ._- (at most 64)")
    if name == DEFAULTS_NAME:
        raise RecipeError(f"{path}: is the shared defaults file, not a recipe")
    if not path.exists():
        known = ", ".join(available_recipes(recipes_dir)) or "none"
        raise RecipeError(f"{path}: no such recipe (known: {known})")
    data = _resolve(name, recipes_dir)
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        raise RecipeError(f"{path}: {_field(err.absolute_path)}: {_explain(err)}")
    recipe = Recipe(name=name, path=path, data=data)
    _check_templates(recipe)
    _check_signing_keys(recipe)
    return recipe


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + "…" + text[-4:]


def _explain(err: jsonschema.ValidationError) -> str:
    if err.validator == "pattern" and "description" in err.schema:
        return f"{_short(err.instance)} is not {err.schema['description']}"
    if err.validator == "maxLength":
        return f"{_short(err.instance)} is longer than {err.validator_value} characters"
    if err.validator == "not" and err.validator_value.get("pattern") == RESERVED_TAG_RE:
        return f"tag {_short(err.instance)} is reserved: condor-seed: and aws: tags are set by the pipeline"
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        return f"unknown key {', '.join(map(repr, extra))} (allowed: {', '.join(sorted(err.schema['properties']))})"
    if err.validator == "required":
        return err.message.replace("is a required property", "is missing (required)")
    if err.validator == "pattern" and err.schema.get("pattern") == REGION_RE:
        return f"{err.instance!r} is not an AWS region name (like us-east-1)"
    if err.validator == "enum":
        return f"{_short(err.instance)} is not one of {', '.join(map(str, err.validator_value))}"
    return err.message if len(err.message) <= 200 else err.message[:195] + " …"


def available_recipes(recipes_dir: Path = RECIPES_DIR) -> list[str]:
    return sorted(p.stem for p in recipes_dir.glob("*.yaml") if p.stem != DEFAULTS_NAME)


def load_recipes(selection: str, recipes_dir: Path = RECIPES_DIR) -> list[Recipe]:
    """``all`` or a comma-separated list of names; every one is validated before any is used."""
    names = available_recipes(recipes_dir) if selection in ("all", "") else [s.strip() for s in selection.split(",") if s.strip()]
    return [load_recipe(n, recipes_dir) for n in names]
