#!/usr/bin/env python3
"""A BuildKit SBOM generator for the tests: BuildKit's scanner protocol, stdlib only.

BuildKit mounts the root filesystem to scan at $BUILDKIT_SCAN_SOURCE (and other
stages' under $BUILDKIT_SCAN_SOURCE_EXTRAS, when asked), and reads one in-toto
statement per scan from $BUILDKIT_SCAN_DESTINATION/<scan>.spdx.json. Each statement
here holds an SPDX 2.3 document listing the Debian packages of the root filesystem
(var/lib/dpkg/status) and every installed Python distribution (*.dist-info/METADATA).

It stands in for docker/buildkit-syft-scanner, which our machines cannot pull. The
document is a pure function of the scanned files (no clock, no random namespace), so
an unchanged tree gives an unchanged SBOM.
"""

import hashlib
import json
import os
import re
import sys

SKIPPED = {"proc", "sys", "dev"}


def dpkg_packages(root):
    try:
        with open(os.path.join(root, "var/lib/dpkg/status"), encoding="utf-8") as status:
            text = status.read()
    except FileNotFoundError:
        return []
    packages = []
    for paragraph in text.split("\n\n"):
        fields = dict(
            line.split(":", 1) for line in paragraph.splitlines() if ":" in line and not line.startswith(" ")
        )
        fields = {key: value.strip() for key, value in fields.items()}
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            arch = fields.get("Architecture", "all")
            name, version = fields["Package"], fields.get("Version", "")
            packages.append(("deb", name, version, f"pkg:deb/debian/{name}@{version}?arch={arch}"))
    return packages


def python_packages(root):
    packages = []
    for directory, subdirectories, _files in os.walk(root):
        if directory == root:
            subdirectories[:] = [d for d in subdirectories if d not in SKIPPED]
        for subdirectory in [d for d in subdirectories if d.endswith(".dist-info")]:
            metadata = {}
            try:
                with open(os.path.join(directory, subdirectory, "METADATA"), encoding="utf-8") as file:
                    for line in file:
                        if not line.strip():
                            break
                        key, _, value = line.partition(":")
                        metadata.setdefault(key, value.strip())
            except FileNotFoundError:
                continue
            if "Name" in metadata:
                name, version = metadata["Name"], metadata.get("Version", "")
                normalized = re.sub(r"[-_.]+", "-", name).lower()
                packages.append(("python", name, version, f"pkg:pypi/{normalized}@{version}"))
    return packages


def document(name, packages):
    namespace = hashlib.sha256(json.dumps(packages).encode()).hexdigest()
    spdx_packages, relationships = [], []
    for position, (kind, package, version, purl) in enumerate(packages):
        spdx_id = f"SPDXRef-Package-{kind}-{position}-" + re.sub(r"[^A-Za-z0-9.-]", "-", package)
        spdx_packages.append({
            "name": package,
            "SPDXID": spdx_id,
            "versionInfo": version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "externalRefs": [
                {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}
            ],
        })
        relationships.append(
            {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": spdx_id}
        )
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"https://stigmer.invalid/test-sbom/{name}/{namespace}",
        "creationInfo": {"created": "1970-01-01T00:00:00Z", "creators": ["Tool: stigmer-test-sbom-scanner"]},
        "packages": spdx_packages,
        "relationships": relationships,
    }


def main():
    destination = os.environ["BUILDKIT_SCAN_DESTINATION"]
    targets = [os.environ["BUILDKIT_SCAN_SOURCE"]]
    extras = os.environ.get("BUILDKIT_SCAN_SOURCE_EXTRAS", "")
    if extras and os.path.isdir(extras):
        targets += [os.path.join(extras, entry) for entry in sorted(os.listdir(extras))]
    for root in targets:
        name = os.path.basename(root.rstrip("/"))
        packages = dpkg_packages(root) + sorted(python_packages(root))
        statement = {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://spdx.dev/Document",
            "subject": [],
            "predicate": document(name, packages),
        }
        with open(os.path.join(destination, f"{name}.spdx.json"), "w", encoding="utf-8") as out:
            json.dump(statement, out, indent=1, sort_keys=True)
        print(f"{name}: {len(packages)} packages", file=sys.stderr)


if __name__ == "__main__":
    main()
