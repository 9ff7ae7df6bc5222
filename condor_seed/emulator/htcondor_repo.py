"""Test-only: a local HTTP server serving HTCondor-shaped RPM repository metadata (repomd.xml + primary),
for the upstream check. Real HTTP on 127.0.0.1, real compressed files; it counts every request per path."""
from __future__ import annotations

import collections
import gzip
import hashlib
import http.server
import lzma
import threading
from pathlib import Path

import zstandard

COMPRESS = {"gz": lambda b: gzip.compress(b, mtime=0), "xz": lzma.compress,
            "zst": lambda b: zstandard.ZstdCompressor().compress(b)}


def primary_xml(packages: list[tuple[str, str, str, str, str]]) -> bytes:
    """(name, arch, epoch, ver, rel) rows as createrepo writes them (only the fields we read, plus noise)."""
    rows = "".join(
        f'<package type="rpm"><name>{n}</name><arch>{a}</arch><version epoch="{e}" ver="{v}" rel="{r}"/>'
        f'<checksum type="sha256" pkgid="YES">{"0" * 64}</checksum><summary>{n}</summary>'
        f'<format><rpm:license>ASL 2.0</rpm:license><rpm:requires><rpm:entry name="libc.so.6()(64bit)"/>'
        f'</rpm:requires></format></package>\n' for n, a, e, v, r in packages)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="http://linux.duke.edu/metadata/common" '
            f'xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="{len(packages)}">\n{rows}</metadata>\n').encode()


class FixtureRepo:
    """Files under `root`, served at `url`. `publish(series, el, arch, condor_versions)` (re)writes one repository."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: collections.Counter[str] = collections.Counter()
        self._revision = 1700000000
        repo = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                repo.requests[self.path] += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/repo"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def publish(self, series: str, el: str, arch: str, condor_versions: list[str], compression: str = "gz",
                extra: int = 300) -> None:
        """condor (and its sub-packages) at each version, plus `extra` other packages, as one repository."""
        rows = []
        for version in condor_versions:
            for name in ("condor", "condor-devel", "python3-condor", "condor-upgrade-checks"):
                rows.append((name, arch, "0", version, f"1.el{el}"))
        rows += [(f"other-package-{i}", "noarch", "0", f"{i}.0", "1") for i in range(extra)]
        rows.append(("condor", "ppc64le" if arch != "ppc64le" else "x86_64", "0", "99.0.0", "1"))  # other arch
        primary = COMPRESS[compression](primary_xml(rows))
        checksum = hashlib.sha256(primary).hexdigest()
        base = self.root / "repo" / series / f"el{el}" / arch / "release" / "repodata"
        base.mkdir(parents=True, exist_ok=True)
        for old in base.glob("*-primary.xml.*"):
            old.unlink()
        (base / f"{checksum}-primary.xml.{compression}").write_bytes(primary)
        self._revision += 1
        (base / "repomd.xml").write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n<repomd xmlns="http://linux.duke.edu/metadata/repo" '
            f'xmlns:rpm="http://linux.duke.edu/metadata/rpm">\n  <revision>{self._revision}</revision>\n'
            f'  <data type="primary">\n    <checksum type="sha256">{checksum}</checksum>\n'
            f'    <location href="repodata/{checksum}-primary.xml.{compression}"/>\n'
            f'    <size>{len(primary)}</size>\n  </data>\n</repomd>\n')

    def metadata_requests(self) -> int:
        return sum(n for path, n in self.requests.items() if "-primary.xml" in path)

    def repomd_requests(self) -> int:
        return sum(n for path, n in self.requests.items() if path.endswith("repomd.xml"))
