"""Find Google's Firestore and Pub/Sub emulators and write the env file for firebase-tools.

Order (NOTES.md): the machine's gcloud packages, then the folder named by
WA_KEEPER_EMULATORS_DIR, then nothing (firebase-tools downloads its own jars,
which needs internet). The gcloud Firestore jar has no Main-Class, so a
manifest-only wrapper jar points at it; firebase-tools chmods the binaries it is
given, so it only ever gets files inside our own cache folder.
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path

GCLOUD_PLATFORM = Path("/usr/lib/google-cloud-sdk/platform")
FIRESTORE_JAR = Path("cloud-firestore-emulator/cloud-firestore-emulator.jar")
PUBSUB_LAUNCHER = Path("pubsub-emulator/bin/cloud-pubsub-emulator")
FIRESTORE_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"


def candidates() -> list[tuple[str, Path]]:
    found = [("the gcloud packages", GCLOUD_PLATFORM)]
    named = os.environ.get("WA_KEEPER_EMULATORS_DIR")
    if named:
        found.append(("WA_KEEPER_EMULATORS_DIR", Path(named).resolve()))
    return found


def complete(root: Path) -> bool:
    return (root / FIRESTORE_JAR).is_file() and (root / PUBSUB_LAUNCHER).is_file()


def write_wrapper_jar(target: Path, real_jar: Path) -> None:
    manifest = (
        f"Manifest-Version: 1.0\r\nMain-Class: {FIRESTORE_MAIN}\r\nClass-Path: {real_jar.as_uri()}\r\n\r\n"
    )
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", manifest)
    tmp.replace(target)


def link_pubsub(cache: Path, source: Path) -> Path:
    """A private copy of the launcher script beside a link to the jars it runs."""
    home = cache / "pubsub-emulator"
    (home / "bin").mkdir(parents=True, exist_ok=True)
    lib = home / "lib"
    if lib.is_symlink() or lib.exists():
        lib.unlink()
    lib.symlink_to(source / "pubsub-emulator" / "lib")
    launcher = home / "bin" / "cloud-pubsub-emulator"
    shutil.copyfile(source / PUBSUB_LAUNCHER, launcher)
    launcher.chmod(0o755)
    return launcher


def main(cache_dir: str) -> int:
    cache = Path(cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    env_file = cache / "env.sh"
    for label, root in candidates():
        if complete(root):
            wrapper = cache / "firestore-wrapper.jar"
            write_wrapper_jar(wrapper, root / FIRESTORE_JAR)
            launcher = link_pubsub(cache, root)
            env_file.write_text(
                f"# emulators from {label}: {root}\n"
                f"export FIRESTORE_EMULATOR_BINARY_PATH={wrapper}\n"
                f"export PUBSUB_EMULATOR_BINARY_PATH={launcher}\n"
            )
            print(f"setup: emulators from {label} ({root})")
            return 0
    env_file.write_text("# no local emulators: firebase-tools downloads its own (needs internet)\n")
    print("setup: no local emulators found; firebase-tools will download them (needs internet)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".cache/emulators"))
