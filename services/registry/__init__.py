"""Model registry: immutable versions with typed lineage, CAS aliases, verified loading.

It stores and verifies files; building and scoring a loaded version is
:mod:`services.model`'s.
"""

from services.registry.manifest import Lineage, Manifest, code_version, diff_manifests
from services.registry.store import (
    AliasConflictError,
    AliasLockTimeoutError,
    ArtifactIntegrityError,
    InvalidNameError,
    LoadedModel,
    ModelRegistry,
    RegisteredVersion,
    RegistryError,
    VersionNotFoundError,
)

__all__ = [
    "AliasConflictError",
    "AliasLockTimeoutError",
    "ArtifactIntegrityError",
    "InvalidNameError",
    "Lineage",
    "LoadedModel",
    "Manifest",
    "ModelRegistry",
    "RegisteredVersion",
    "RegistryError",
    "VersionNotFoundError",
    "code_version",
    "diff_manifests",
]
