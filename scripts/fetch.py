#!/usr/bin/env python3
"""Installs the face models and the test photos, each checked, from a mirror
first and from the public upstream second.

    fetch.py models MANIFEST DEST   the models in models/manifest.toml (sha256)
    fetch.py faces LIST DEST        the photos in scripts/faces.sha256

The mirror (ARCLOCK_MIRROR) is a directory or a URL (file://, http(s)://)
holding models/ and faces/ as ../shared does; "none" means there is none.
Upstreams: each model's `url`; the photos of lfw-dev from the LFW archive
(ARCLOCK_LFW_URL, md5 ARCLOCK_LFW_MD5: by default the public archive and the
md5 torchvision pins), the PAD samples from their repository. What cannot be
found is named with every place it was looked for, and set-up fails; an
optional model is reported absent instead.
"""

import hashlib
import os
import shutil
import sys
import tarfile
import tomllib
import urllib.error
import urllib.request

LFW_URL = "http://vis-www.cs.umass.edu/lfw/lfw.tgz"
LFW_MD5 = "a17d05bd522c52d84eca14327a23d494"
# minivision-ai/Silent-Face-Anti-Spoofing, the upstream of the PAD models and
# their three labelled samples (Apache-2.0).
PAD_SAMPLES = "https://raw.githubusercontent.com/minivision-ai/Silent-Face-Anti-Spoofing/master/images/sample/"
TIMEOUT = 30


def digest(path, algo="sha256"):
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mirror():
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
    m = os.environ.get("ARCLOCK_MIRROR", default)
    return None if m in ("", "none") else m


def get(source, tmp):
    """Copies a path or downloads a URL to tmp; returns None or why it failed."""
    try:
        if "://" in source:
            with urllib.request.urlopen(source, timeout=TIMEOUT) as r, open(tmp, "wb") as out:
                shutil.copyfileobj(r, out)
        else:
            shutil.copyfile(source, tmp)
        return None
    except (OSError, urllib.error.URLError, ValueError) as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        return str(getattr(e, "reason", e))


def in_mirror(m, *parts):
    return (m.rstrip("/") + "/" + "/".join(parts)) if "://" in m else os.path.join(m, *parts)


def install(dest, want_sha, sources):
    """Tries each (label, source) until one gives the right bytes; returns the
    label used, or the list of (label, reason) that failed."""
    tmp = dest + ".tmp"
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tried = []
    for label, source in sources:
        why = get(source, tmp)
        if why is None and digest(tmp) != want_sha:
            os.remove(tmp)
            why = "wrong sha256"
        if why is None:
            os.replace(tmp, dest)
            return label, []
        tried.append((label, source, why))
    return None, tried


def models(manifest, dest):
    with open(manifest, "rb") as f:
        entries = tomllib.load(f)["model"]
    m, missing = mirror(), []
    os.makedirs(dest, exist_ok=True)
    for e in entries:
        target = os.path.join(dest, e["file"])
        if os.path.exists(target) and digest(target) == e["sha256"]:
            continue
        sources = []
        if m:
            sources.append(("mirror", in_mirror(m, "models", e["file"])))
        if e.get("url"):
            sources.append(("upstream", e["url"]))
        used, tried = install(target, e["sha256"], sources)
        if used:
            print(f"setup: model {e['id']} installed from {used}")
        elif e.get("optional"):
            print(f"setup: optional model {e['id']} is absent (reported unavailable): {explain(tried, m)}")
        else:
            missing.append(f"model {e['file']}: {explain(tried, m)}")
    return missing


def explain(tried, m):
    looked = [f"{label} {src}: {why}" for label, src, why in tried]
    if not m:
        looked.append("no mirror (ARCLOCK_MIRROR=none)")
    if not tried:
        looked.append("no upstream URL known")
    return "; ".join(looked)


def faces(listing, dest):
    with open(listing) as f:
        wanted = [line.split(None, 1) for line in f.read().splitlines() if line.strip()]
    wanted = [(sha, rel.strip()) for sha, rel in wanted]
    stamp = os.path.join(dest, ".complete")
    if os.path.exists(stamp) and all(os.path.exists(os.path.join(dest, rel)) for _, rel in wanted):
        return []
    m, missing, lfw = mirror(), [], []
    for sha, rel in wanted:
        target = os.path.join(dest, rel)
        if os.path.exists(target) and digest(target) == sha:
            continue
        sources = [("mirror", in_mirror(m, "faces", rel))] if m else []
        if rel.startswith("pad-samples/"):
            sources.append(("upstream", PAD_SAMPLES + os.path.basename(rel)))
        used, tried = install(target, sha, sources)
        if used:
            continue
        if rel.startswith("lfw-dev/"):
            lfw.append((rel, tried))
        else:
            missing.append(f"photo {rel}: {explain(tried, m)}")
    if lfw:
        missing += from_lfw_archive(dest, lfw, m)
    if not missing:
        open(stamp, "w").close()
        print(f"setup: {len(wanted)} test photos in {dest}")
    return missing


def from_lfw_archive(dest, needed, m):
    """The lfw-dev photos the mirror lacks, from the public LFW archive. Those
    are LFW's own 250x250 files; the mirror's are 150x150 copies of the same
    photos, so the archive's bytes are checked by the archive's md5, not by
    the listed sha256 (which are the mirror's)."""
    url = os.environ.get("ARCLOCK_LFW_URL", LFW_URL)
    md5 = os.environ.get("ARCLOCK_LFW_MD5", LFW_MD5)
    first = f"{needed[0][0]} and {len(needed) - 1} more lfw-dev photos"
    mirror_why = explain(needed[0][1], m)
    cache = os.path.join(os.path.dirname(os.path.abspath(dest)), "cache", "lfw.tgz")
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    if not (os.path.exists(cache) and digest(cache, "md5") == md5):
        print(f"setup: {len(needed)} lfw-dev photos not in the mirror; fetching the LFW archive {url}")
        why = get(url, cache)
        if why is None and digest(cache, "md5") != md5:
            os.remove(cache)
            why = f"md5 is not {md5}"
        if why is not None:
            return [f"photos {first}: {mirror_why}; LFW archive {url}: {why}"]
    names = {"lfw/" + rel[len("lfw-dev/"):]: rel for rel, _ in needed}
    found = 0
    with tarfile.open(cache) as tar:
        for member in tar:
            rel = names.get(member.name)
            if rel is None or not member.isfile():
                continue
            target = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with tar.extractfile(member) as src, open(target + ".tmp", "wb") as out:
                shutil.copyfileobj(src, out)
            os.replace(target + ".tmp", target)
            found += 1
    if found < len(names):
        absent = sorted(r for r in names.values() if not os.path.exists(os.path.join(dest, r)))
        return [f"photos {absent[0]} and {len(absent) - 1} more: in neither the mirror nor the LFW archive {url}"]
    print(f"setup: {found} lfw-dev photos extracted from the LFW archive (LFW's 250x250 originals)")
    return []


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("models", "faces"):
        sys.exit(__doc__)
    what, listing, dest = sys.argv[1:]
    missing = (models if what == "models" else faces)(listing, dest)
    if missing:
        print("setup: cannot install everything; what is missing and where it was looked for:", file=sys.stderr)
        for line in missing:
            print(f"  - {line}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
