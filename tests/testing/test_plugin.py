"""The pytest plugin as a user meets it: a marker, a fixture, pveoci.connect() bound to the cassette, clear failures."""

from __future__ import annotations

import shutil
import sys

import pytest

# pytester's in-process runs put sys.modules back as it was after each run: what is imported here stays
# loaded (requests' classes must be the same objects from one run to the next).
import pveoci.testing.recorder  # noqa: F401
from pveoci.backends import api  # noqa: F401
from tests.cassettes.scenarios import BY_NAME

DOCTOR = BY_NAME["doctor"].cassette


def test_a_users_code_runs_against_a_cassette(pytester: pytest.Pytester) -> None:
    (pytester.path / "cassettes").mkdir()
    shutil.copy(DOCTOR, pytester.path / "cassettes" / "test_by_its_name.json")
    pytester.makepyfile(test_user=f"""
        import pytest
        import pveoci

        def healthy(profile=None):  # the user's code: it connects by itself
            return all(c.status == "pass" for c in pveoci.connect(profile).doctor())

        @pytest.mark.pve_cassette({str(DOCTOR)!r})
        def test_connect_is_bound_to_the_cassette():
            assert healthy("lab")

        @pytest.mark.pve_cassette({str(DOCTOR)!r})
        def test_the_fixture_gives_a_runtime(pve_cassette):
            rt = pve_cassette.runtime
            assert rt.settings.profile.host == "pve.cassette.invalid"
            assert {{c.name: c.status for c in rt.doctor()}}["ssh pve2"] == "pass"

        @pytest.mark.pve_cassette
        def test_by_its_name():
            assert healthy()
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_a_test_that_leaves_recorded_requests_unused_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=f"""
        import pytest
        import pveoci

        @pytest.mark.pve_cassette({str(DOCTOR)!r})
        def test_only_the_nodes():
            pveoci.connect().nodes()
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_only_the_nodes*",
                                 "doctor.json: 5 recorded interaction(s) not used:", "  HTTP #2 GET /version",
                                 "  HTTP #3 GET /access/permissions", "  HTTP #4 GET /cluster/status",
                                 "  SSH #1 check of pve1", "  SSH #2 check of pve2"])


def test_a_test_that_fails_by_itself_is_not_also_blamed_for_unused_requests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=f"""
        import pytest
        import pveoci

        @pytest.mark.pve_cassette({str(DOCTOR)!r})
        def test_stops_early():
            pveoci.connect().nodes()
            assert False, "the test's own failure"
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "not used" not in result.stdout.str()


def test_a_missing_cassette_says_how_to_record_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="""
        import pytest

        @pytest.mark.pve_cassette("deploy")
        def test_deploy(pve_cassette):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cassette */cassettes/deploy.json does not exist: record it first "
                                 "(pytest --pve-record PROFILE*"])


def test_without_responses_the_plugin_says_what_to_install(pytester: pytest.Pytester,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "responses", None)  # as if it were not installed
    pytester.makepyfile(test_user=f"""
        import pytest

        @pytest.mark.pve_cassette({str(DOCTOR)!r})
        def test_anything():
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*pveoci.testing replays cassettes with the 'responses' library, which is not "
                                 "installed: pip install 'pveoci?testing?'"])
    assert "During handling" not in result.stdout.str()


def test_the_record_option_is_offered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--pve-record=PROFILE*record pve_cassette tests against the live cluster*"])
