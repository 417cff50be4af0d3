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
