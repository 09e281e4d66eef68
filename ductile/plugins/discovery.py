"""Plugin discovery (plugins.md §1): walk the roots, load manifests, apply the trust checks.

Runs at boot and on reload. Only the fatal load errors of §1's table raise (`DiscoveryError`);
everything about a single plugin is reported as a `DiscoveryLog` and the walk goes on. The
function does no logging itself, so callers (boot, reload, doctor) decide where the lines go.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import msgspec

from ductile.plugins.manifest import Manifest, ManifestError, parse_manifest
from ductile.plugins.trust import TrustError, check_entrypoint_text, check_resolved

MANIFEST_FILE = "manifest.yaml"
SKIPPED_DIRECTORIES = frozenset({"node_modules", "__pycache__"})
ENTRYPOINT_HINT_FILES = frozenset(
    {"run.py", "run.sh", "main.go", "main.py", "index.js", "index.ts", "run.js", "run.ts"}
)

MSG_DUPLICATE = "duplicate plugin ignored (keeping first discovered)"
MSG_FAILED = "failed to load plugin"
MSG_MISSING_MANIFEST = "plugin directory missing manifest.yaml — directory will be ignored"
MSG_SYMLINK_FOLLOWED = "symlink followed (service.allow_symlinks: true)"
MSG_SYMLINK_SKIPPED = "symlinked directory skipped (service.allow_symlinks is false)"
MSG_KEYS_IGNORED = "unknown manifest keys ignored"
MSG_UNREADABLE_DIRECTORY = "plugin root directory cannot be read"


def repeated_command_message(plugin: str, command: str) -> str:
    """plugins.md §2: a command declared twice keeps its first entry, with this warning."""
    return f'plugin {plugin}: command "{command}" declared twice; the first entry is used'


class DiscoveredPlugin(msgspec.Struct, frozen=True):
    manifest: Manifest
    directory: Path
    manifest_path: Path
    entrypoint: Path


class DiscoveryLog(msgspec.Struct, frozen=True):
    level: str
    msg: str
    fields: dict


class DiscoveryError(Exception):
    """A fatal load error: the gateway must not start with this configuration."""


def discover(
    roots: Sequence[Path], allow_symlinks: bool = False
) -> tuple[dict[str, DiscoveredPlugin], list[DiscoveryLog]]:
    """Return the plugins by manifest name (first found wins) and what to log about the walk."""
    walk = _Walk(allow_symlinks)
    for root in walk.check_roots(roots):
        walk.directory(root, depth=0)
    return walk.plugins, walk.logs


def symlink_not_allowed(path: Path) -> DiscoveryError:
    return DiscoveryError(f"symlink not allowed: {path} (set service.allow_symlinks: true to permit)")


class _Walk:
    def __init__(self, allow_symlinks: bool) -> None:
        self.allow_symlinks = allow_symlinks
        self.plugins: dict[str, DiscoveredPlugin] = {}
        self.logs: list[DiscoveryLog] = []
        self.roots: list[Path] = []
        self.visited: set[tuple[int, int]] = set()

    def log(self, level: str, msg: str, **fields: object) -> None:
        self.logs.append(DiscoveryLog(level=level, msg=msg, fields=fields))

    def followed(self, link: Path) -> Path:
        """Resolve a symlink the configuration allows, or refuse to start."""
        if not self.allow_symlinks:
            raise symlink_not_allowed(link)
        target = _real(link)
        self.log("WARN", MSG_SYMLINK_FOLLOWED, path=str(link), target=str(target))
        return target

    def check_roots(self, roots: Sequence[Path]) -> list[Path]:
        if not roots:
            raise DiscoveryError("plugin_roots is required (at least one directory)")
        resolved: list[Path] = []
        seen: set[Path] = set()
        for i, root in enumerate(roots):
            absolute = Path(os.path.abspath(root))
            if absolute in seen:
                continue
            seen.add(absolute)
            real = self.followed(absolute) if absolute.is_symlink() else _real(absolute)
            if not real.is_dir():
                raise DiscoveryError(f"plugin_roots[{i}]: {absolute} is not a directory")
            resolved.append(real)
        self.roots = resolved
        return resolved

    def directory(self, path: Path, depth: int) -> None:
        try:
            identity = _identity(path)
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.log("WARN", MSG_UNREADABLE_DIRECTORY, path=str(path), error=str(exc))
            return
        if identity in self.visited:  # a symlink loop, or a directory reached twice
            return
        self.visited.add(identity)

        names = {e.name for e in entries}
        if depth == 1 and MANIFEST_FILE not in names and names & ENTRYPOINT_HINT_FILES:
            self.log(
                "WARN",
                MSG_MISSING_MANIFEST,
                path=str(path),
                hint="add a manifest.yaml or remove the directory",
            )
        for entry in entries:
            if entry.name == MANIFEST_FILE and (entry.is_symlink() or _is_file(entry)):
                self.candidate(path, Path(entry.path), entry.is_symlink())
            elif _is_dir(entry):
                self.subdirectory(Path(entry.path), entry.is_symlink(), depth + 1)

    def subdirectory(self, path: Path, is_symlink: bool, depth: int) -> None:
        if path.name.startswith(".") or path.name in SKIPPED_DIRECTORIES:
            return
        if not is_symlink:
            self.directory(path, depth)
        elif self.allow_symlinks:
            self.directory(self.followed(path), depth)
        elif os.path.lexists(path / MANIFEST_FILE):
            raise symlink_not_allowed(path)
        else:
            self.log("DEBUG", MSG_SYMLINK_SKIPPED, path=str(path))

    def candidate(self, directory: Path, manifest_path: Path, is_symlink: bool) -> None:
        if is_symlink:
            manifest_path = self.followed(manifest_path)
        try:
            manifest = parse_manifest(manifest_path.read_bytes(), str(manifest_path))
            entrypoint = self.entrypoint(directory, manifest)
        except (OSError, ManifestError, TrustError) as exc:
            self.log("WARN", MSG_FAILED, path=str(manifest_path), error=str(exc))
            return
        if manifest.ignored_keys:
            self.log(
                "DEBUG",
                MSG_KEYS_IGNORED,
                plugin=manifest.name,
                path=str(manifest_path),
                keys=list(manifest.ignored_keys),
            )
        for command in manifest.repeated_commands:
            self.log("WARN", repeated_command_message(manifest.name, command), path=str(manifest_path))
        kept = self.plugins.get(manifest.name)
        if kept is not None:
            self.log(
                "WARN",
                MSG_DUPLICATE,
                name=manifest.name,
                kept=str(kept.manifest_path),
                ignored=str(manifest_path),
            )
            return
        self.plugins[manifest.name] = DiscoveredPlugin(
            manifest=manifest, directory=directory, manifest_path=manifest_path, entrypoint=entrypoint
        )

    def entrypoint(self, directory: Path, manifest: Manifest) -> Path:
        relative = check_entrypoint_text(manifest.entrypoint)
        path = directory
        for part in relative.parts:
            path = path / part
            if path.is_symlink():
                # Every symlinked component needs the opt-in; resolve() below follows them all.
                self.followed(path)
        resolved = _real(directory / relative)
        check_resolved(directory, resolved, self.roots)
        return resolved


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # e.g. a symlink loop: not a directory we can walk
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _real(path: Path) -> Path:
    # Not Path.resolve(): on Python 3.11 it raises RuntimeError for a symlink loop, while
    # realpath returns a path whose later stat/read fails and is reported like any bad plugin.
    return Path(os.path.realpath(path))


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino
