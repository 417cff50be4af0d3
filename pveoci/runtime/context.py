"""What every use case works with: the backend, the cache, the settings, and how to report progress."""

from __future__ import annotations

from dataclasses import dataclass

from pveoci.backends.base import Backend
from pveoci.cache import Cache
from pveoci.settings import Profile, Settings


@dataclass
class Context:
    backend: Backend
    cache: Cache
    settings: Settings

    @property
    def profile(self) -> Profile:
        return self.settings.profile

    @property
    def cluster(self) -> str:
        """The cache's name for the cluster: the profile's (stable, and known offline)."""
        return self.settings.profile.name

    @property
    def facts_scope(self) -> str:
        """Where the cache keeps facts about the cluster (runtime.facts): the profile and the API it names, so
        a profile pointed at another cluster starts afresh."""
        return facts_scope(self.settings)


def facts_scope(settings: Settings) -> str:
    profile = settings.profile
    return f"{profile.name}@{profile.host}:{profile.port}"
