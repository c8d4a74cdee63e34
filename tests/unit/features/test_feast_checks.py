"""Feast's import-time typeguard instrumentation is skipped (it cost 14 of the 16 s a
``driftloop data columns`` took).

Each case runs a fresh interpreter: whether Feast is instrumented is decided once, when
Feast is first imported. Bugs caught: the no-op installed after Feast was imported (no
effect: every process pays the 14 s again), the package no longer installing it. The
probe's positive control imports Feast first: it must find the instrumentation there.
"""

from __future__ import annotations

import subprocess
import sys

DRIFTLOOP_FIRST = "import services.features  # what every driftloop path to Feast imports first"
FEAST_FIRST = "import feast  # before driftloop: too late to skip the instrumentation"
PROBE = """
import sys
{imports}
import feast.feature_service as fs
import services.features
names = fs.FeatureService.__init__.__code__.co_names
print("instrumented" if "check_argument_types_internal" in names else "plain")
"""


def _probe(imports: str = DRIFTLOOP_FIRST) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE.format(imports=imports)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_feast_is_imported_without_typeguard_instrumentation() -> None:
    assert _probe() == "plain"


def test_the_probe_sees_the_instrumentation_when_feast_comes_first() -> None:
    """Positive control: Feast imported before driftloop is instrumented, and the probe
    must say so (else 'plain' above would prove nothing: a typeguard that renamed its
    check, a Feast that dropped ``@typechecked``)."""
    assert _probe(FEAST_FIRST) == "instrumented"


def test_too_late_changes_nothing_and_says_so() -> None:
    import feast  # noqa: F401  # already imported in this process (conftest order aside)

    from services.features.feast_checks import skip_feast_type_instrumentation

    assert skip_feast_type_instrumentation() is False


def test_the_no_op_decorator_returns_its_target() -> None:
    from services.features.feast_checks import _no_instrumentation

    def target() -> None: ...

    assert _no_instrumentation(target) is target
    assert _no_instrumentation(forward_ref_policy=None)(target) is target
