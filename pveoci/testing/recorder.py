"""Recording and replaying a cassette: Runtimes whose API traffic and SSH commands go to (or come from) it.

    with Recorder("deploy.json", "lab") as rec:     # against the live cluster of profile "lab"
        deploy(rec.connect())
    with Player("deploy.json") as play:             # offline; raises if the code asked otherwise
        deploy(play.connect())

`connect()` takes pveoci.connect's arguments, so it can stand in for it (the pytest plugin does that).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pveoci import errors
from pveoci.testing.cassette import Cassette, ssh_key
from pveoci.testing.match import CassetteMismatch, CassetteUnused, Tape
from pveoci.testing.normalise import LocalValues, sent_stand_ins

if TYPE_CHECKING:
    from pveoci.backends.base import Backend
    from pveoci.runtime import Runtime
    from pveoci.settings import Profile, Settings
    from pveoci.testing.log import RecordLog
    from pveoci.testing.replay import HttpReplayer
    from pveoci.testing.scrub import Secrets

#: The settings of the recording profile that shape what pveoci asks; a replay uses them again.
SHAPING = ("name", "user", "node", "template_storage", "rootfs_storage", "bridge", "vmid_range", "unprivileged",
           "retries")
SHAPING_SSH = ("user", "sudo")
REPLAY_HOST = "pve.cassette.invalid"
REPLAY_SECRET = "cassette-replay-secret"  # noqa: S105 - what a replay's profile presents; nothing checks it
SHOWN_UNUSED = 10

log = logging.getLogger("pveoci.testing")
_active = threading.Lock()  # one session at a time: it patches the packer for the process


def shaping(profile: Profile) -> dict[str, Any]:
    data: dict[str, Any] = {key: getattr(profile, key) for key in SHAPING}
    data["ssh"] = {key: getattr(profile.ssh, key) for key in SHAPING_SSH}
    return data


class Session:
    """What recording and replaying share: Runtimes made by connect(), templates seen as they are packed."""

    def __init__(self, path: Path | str, root: Path | str | None, local: LocalValues | None = None) -> None:
        self.path = Path(path)
        self.local = local or LocalValues()
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="pveoci-cassette-")) if root is None else Path(root)
        self._runtimes: list[Runtime] = []
        self._original_pack: Any = None
        self._clock = time.time()

    def _settings(self, overrides: dict[str, Any]) -> Settings:
        raise NotImplementedError

    def _backend(self, settings: Settings) -> Backend:
        raise NotImplementedError

    def _accept(self, settings: Settings) -> None:
        """Settings a Runtime is made with (a recording learns their secrets)."""

    def connect(self, profile: str | None = None, *, config: Path | str | None = None,
                root: Path | str | None = None, settings: Settings | None = None, backend: Backend | None = None,
                **overrides: Any) -> Runtime:
        """A Runtime bound to the cassette, as pveoci.connect() would make it. The profile is the recording's
        (`profile` and `config` are ignored: scripts name their own); overrides apply as usual."""
        from pveoci.cache import Cache
        from pveoci.runtime import Runtime

        settings = settings or self._settings(overrides)
        self._accept(settings)
        # As pveoci.connect() makes it, but with the cache's clock stopped at the session's start: facts kept for
        # a while (the nodes placement uses, a storage's place) are then asked at the same points of a recording
        # and of its replay, however long the cluster took in between.
        cache = Cache(Path(root or self.root), clock=lambda: self._clock)
        rt = Runtime(backend or self._backend(settings), cache, settings)
        self._runtimes.append(rt)
        return rt

    @property
    def runtime(self) -> Runtime:
        """The session's first Runtime (made on first use)."""
        return self._runtimes[0] if self._runtimes else self.connect()

    def start(self) -> None:
        from pveoci.runtime import push

        if not _active.acquire(blocking=False):
            raise RuntimeError("a pveoci cassette is recording or replaying already in this process")
        # runtime.push calls the packer by this name: the one seam where a packed template is seen.
        original = self._original_pack = vars(push)["pack"]
        local = self.local

        def pack(*args: Any, **kwargs: Any) -> Any:
            packed = original(*args, **kwargs)
            local.add_template(packed.name, packed.file_sha256, packed.size)
            return packed

        vars(push)["pack"] = pack

    def close(self, *, complete: bool = True) -> None:
        """Close the Runtimes, then finish: write the cassette, or check it was all used (unless the code did not
        run to its end: `complete` False, when it failed, reports only what it asked that was not recorded)."""
        from pveoci.runtime import push

        try:
            for rt in self._runtimes:
                rt.close()
        finally:
            if self._original_pack is not None:
                vars(push)["pack"] = self._original_pack
                self._original_pack = None
                _active.release()
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)
        self.finish(complete)

    def finish(self, complete: bool) -> None:
        raise NotImplementedError

    def __enter__(self) -> Session:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(complete=exc_type is None)


class Recorder(Session):
    """Records against the live cluster of a profile; the cassette is written when the session closes, if the code
    ran to its end (a failed run's recording is not kept: the cassette it would replace stays)."""

    def __init__(self, path: Path | str, profile: str | None = None, *, config: Path | str | None = None,
                 replace: dict[str, str] | None = None, root: Path | str | None = None) -> None:
        from pveoci.settings import load
        from pveoci.testing.log import RecordLog
        from pveoci.testing.scrub import Secrets

        super().__init__(path, root)
        self.base = load(profile=profile, config_path=Path(config) if config else None)
        self.log: RecordLog = RecordLog()
        self.secrets: Secrets = Secrets()
        self._learn(self.base)
        #: Literal texts to replace in everything recorded (a test bed's random addresses and paths, say).
        self.replace = dict(replace or {})
        self._watching: Any = None

    def _learn(self, settings: Settings) -> None:
        for key in ("token_secret", "password"):
            with contextlib.suppress(errors.ConfigError):
                self.secrets.add(settings.secret(key))

    def _settings(self, overrides: dict[str, Any]) -> Settings:
        from pveoci.settings import load

        return load(profile=self.base.profile.name, config_path=self.base.config_path, overrides=overrides)

    def _accept(self, settings: Settings) -> None:
        self._learn(settings)

    def _backend(self, settings: Settings) -> Backend:
        from pveoci.pve.client import PveClient
        from pveoci.testing.http import record_session
        from pveoci.testing.ssh import CassetteBackend
        from pveoci.testing.sshtape import RecordingTape

        client = PveClient.from_settings(settings)
        record_session(client.session, lambda entry: self.log.add("http", entry))
        return CassetteBackend(client, settings, RecordingTape(self.log), self.local)

    def start(self) -> None:
        from pveoci import retry

        super().start()
        self._watching = retry.watching(self.log)
        self._watching.__enter__()

    def finish(self, complete: bool) -> None:
        from pveoci.testing.record import normalised

        if self._watching is not None:
            self._watching.__exit__(None, None, None)
            self._watching = None
        if not complete:
            log.warning("%s: not written, the recorded code did not run to its end", self.path)
            return
        http, ssh = normalised(self.log, self.local, self.secrets, self.replace)
        cassette = Cassette(auth=self.base.profile.auth_method, profile=shaping(self.base.profile), http=http,
                            ssh=ssh)
        self.secrets.check(cassette.dumps())
        cassette.save(self.path)
        self.cassette = cassette


class Player(Session):
    """Replays a cassette: no network, every request must be a recorded one, and all of them must be made."""

    def __init__(self, path: Path | str, *, auth: str = "token", root: Path | str | None = None) -> None:
        from pveoci.testing.replay import HttpReplayer
        from pveoci.testing.ssh import show_ssh

        if auth not in ("token", "ticket"):
            raise ValueError(f"auth must be 'token' or 'ticket', not {auth!r}")
        self.auth = auth
        self.cassette = Cassette.load(Path(path))
        asked = [e["request"] for e in self.cassette.http] + [ssh_key(e) for e in self.cassette.ssh]
        super().__init__(path, root, LocalValues(sent_stand_ins(asked)))
        self.http: HttpReplayer = HttpReplayer(self.cassette, self.path.name, self.local)
        self.ssh = Tape(self.path.name, "SSH", self.cassette.ssh, key=ssh_key, show=show_ssh)

    def _settings(self, overrides: dict[str, Any]) -> Settings:
        from pveoci.settings import Profile, Settings

        data = {**self.cassette.profile, "host": REPLAY_HOST, "verify_tls": True}
        data["ssh"] = {**data.get("ssh", {}), "agent": False}
        if self.auth == "token":
            data["token_id"], env = "cassette@pve!replay", {"PVEOCI_TOKEN_SECRET": REPLAY_SECRET}
        else:
            env = {"PVEOCI_PASSWORD": REPLAY_SECRET}  # as the recording's user: root@pam may do more
        data.update({k: v for k, v in overrides.items() if v is not None})
        for key in (k for k, v in overrides.items() if v is None):
            data.pop(key, None)
        try:
            profile = Profile.model_validate(data)
        except ValueError as exc:
            raise errors.ConfigError(f"{self.path}: its profile cannot be replayed: {exc}") from None
        return Settings(profile=profile, config_path=self.path, env=env)

    def _backend(self, settings: Settings) -> Backend:
        from pveoci.pve.client import PveClient
        from pveoci.testing.ssh import CassetteBackend
        from pveoci.testing.sshtape import ReplayTape

        return CassetteBackend(PveClient.from_settings(settings), settings, ReplayTape(self.ssh, self.local),
                               self.local)

    def start(self) -> None:
        super().start()
        self.http.start()

    def finish(self, complete: bool) -> None:
        self.http.stop()
        problems = self.http.tape.problems + self.ssh.problems
        if problems:
            raise CassetteMismatch("\n".join(problems))
        unused = self.http.tape.unused() + self.ssh.unused()
        if unused and complete:
            more = f"\n  ... and {len(unused) - SHOWN_UNUSED} more" if len(unused) > SHOWN_UNUSED else ""
            raise CassetteUnused(f"{self.path.name}: {len(unused)} recorded interaction(s) not used:\n  "
                                 + "\n  ".join(unused[:SHOWN_UNUSED]) + more)
