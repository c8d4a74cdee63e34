"""Model registry: immutable versions with lineage, CAS aliases, verified loading."""

from services.registry.manifest import Lineage, code_version, diff_manifests
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
    "ModelRegistry",
    "RegisteredVersion",
    "RegistryError",
    "VersionNotFoundError",
    "code_version",
    "diff_manifests",
]
