"""An OCI image layout holding only an index: how a re-tag names content the containerd image
store already has (`docker load` of it), without pulling or copying layers."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

from updater.models.reference import OCI_INDEX


def index_of(names: list[tuple[dict[str, Any], str]]) -> bytes:
    """An OCI layout holding only an index that names manifests the engine already has."""
    manifests = [
        {
            "mediaType": descriptor["mediaType"],
            "digest": descriptor["digest"],
            "size": descriptor["size"],
            "annotations": {"io.containerd.image.name": name},
        }
        for descriptor, name in names
    ]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    files = {"oci-layout": {"imageLayoutVersion": "1.0.0"}, "index.json": index}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path, content in files.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
