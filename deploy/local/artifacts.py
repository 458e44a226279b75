"""Fetch the Kafka and Apicurio runtimes with Maven, once, into the project cache.

Maven keeps downloaded artifacts in its local repository (`MULTICHANNEL_MAVEN_REPO`, default
Maven's own `~/.m2/repository`, so clones on one machine download once); the runnable layout is
copied or unpacked into `<cache>/kafka-<version>/libs` and `<cache>/apicurio-<version>/`. A marker
file written after a complete copy makes a second start skip Maven entirely.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from config.settings import Settings

KAFKA_VERSION = "4.3.1"
APICURIO_VERSION = "3.3.3"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
POM = Path(__file__).resolve().parent.parent / "kafka" / "pom.xml"
_MARKER = ".complete"


class ArtifactError(Exception):
    """Maven could not fetch a runtime."""


def _mvn(args: list[str], log: Path) -> None:
    """Run Maven from a throwaway directory: the dependency plugin leaves "already unpacked" markers
    in its working directory, and a stale marker would make a later fetch skip the unpack."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ArtifactError("Maven (`mvn`) is not on PATH; install Maven 3.8+ and Java 17+")
    cmd = [mvn, "-B", "-q", *args]
    repo = Settings().maven_repo
    if repo:
        cmd.append(f"-Dmaven.repo.local={repo}")
    with log.open("ab") as out, tempfile.TemporaryDirectory(prefix="mvn-") as scratch:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, cwd=scratch)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise ArtifactError(f"mvn {' '.join(args[:2])} failed (exit {result.returncode}):\n{tail}")


def kafka_libs(cache_dir: Path) -> Path:
    """The directory of Kafka's runtime jars, fetched if absent."""
    target = cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
    if (target / _MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=target.parent))
    _mvn(
        [
            "-f",
            str(POM),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
            f"-Dkafka.version={KAFKA_VERSION}",
        ],
        target.parent / "maven.log",
    )
    if not any(staging.glob("kafka_2.13-*.jar")):
        raise ArtifactError(f"Maven finished but no kafka_2.13 jar is in {staging}")
    (staging / _MARKER).write_text(KAFKA_VERSION)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def apicurio_home(cache_dir: Path) -> Path:
    """The unpacked Apicurio Registry (Quarkus fast-jar layout), fetched if absent."""
    target = cache_dir / f"apicurio-{APICURIO_VERSION}"
    if (target / _MARKER).exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="apicurio-", dir=cache_dir))
    _mvn(
        [
            f"{DEPENDENCY_PLUGIN}:unpack",
            f"-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all",
            f"-DoutputDirectory={staging}",
        ],
        cache_dir / "maven-apicurio.log",
    )
    if not (staging / "quarkus-run.jar").exists():
        raise ArtifactError(f"Maven finished but {staging}/quarkus-run.jar is missing")
    (staging / _MARKER).write_text(APICURIO_VERSION)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
