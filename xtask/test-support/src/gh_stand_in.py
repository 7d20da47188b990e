#!/usr/bin/env python3
"""GitHub's releases, for the tests: the `gh release` subcommands the release tool runs
(list, view, create, edit, upload), over a state directory ($GH_STAND_IN_STATE) instead
of GitHub's API, which cannot be reached from our machines.

It keeps what GitHub keeps and answers as `gh` does: drafts, pre-releases, the one
release marked Latest (moved only by an explicit --latest, as the release tool always
passes it), assets with their sha256 digests, `release not found` on stderr. A file
`fail` in the state directory makes the subcommand it names (e.g. `edit --draft=false`)
fail once, as GitHub failing half-way would.
"""

import hashlib
import json
import os
import shutil
import sys

STATE = os.environ["GH_STAND_IN_STATE"]
RELEASES = os.path.join(STATE, "releases.json")


def load():
    if not os.path.exists(RELEASES):
        return []
    with open(RELEASES) as f:
        return json.load(f)


def save(releases):
    tmp = RELEASES + ".tmp"
    with open(tmp, "w") as f:
        json.dump(releases, f, indent=1)
    os.replace(tmp, RELEASES)


def fail(message, code=1):
    print(message, file=sys.stderr)
    sys.exit(code)


def find(releases, tag):
    for release in releases:
        if release["tagName"] == tag:
            return release
    fail("release not found")


def option(args, name):
    if name in args:
        return args[args.index(name) + 1]
    return None


def maybe_fail(args):
    path = os.path.join(STATE, "fail")
    if not os.path.exists(path):
        return
    with open(path) as f:
        wanted = f.read().split()
    if all(word in args for word in wanted):
        os.remove(path)
        fail("HTTP 502: Bad Gateway (the stand-in was told to fail: " + " ".join(wanted) + ")")


def main(argv):
    if argv[:1] != ["release"] or len(argv) < 2:
        fail("the gh stand-in knows `gh release list|view|create|edit|upload` only: " + " ".join(argv), 2)
    command, args = argv[1], argv[2:]
    maybe_fail([command] + args)
    releases = load()
    if command == "list":
        fields = option(args, "--json").split(",")
        print(json.dumps([{k: r[k] for k in fields} for r in releases]))
    elif command == "view":
        release = find(releases, args[0])
        fields = option(args, "--json").split(",")
        query = option(args, "--jq")
        if query is None:
            print(json.dumps({k: release[k] for k in fields}))
        elif query.startswith(".") and query[1:] in fields:
            # `--jq .field` prints the string itself, as jq's raw output does for gh.
            print(release[query[1:]])
        else:
            fail(f"the gh stand-in knows `--jq .FIELD` only, not {query!r}", 2)
    elif command == "create":
        tag = args[0]
        if any(r["tagName"] == tag for r in releases):
            fail(f"a release with the same tag name already exists: {tag}")
        with open(option(args, "--notes-file")) as f:
            notes = f.read()
        releases.append({
            "tagName": tag,
            "name": option(args, "--title") or tag,
            "isDraft": "--draft" in args,
            "isPrerelease": "--prerelease" in args,
            "isLatest": False,
            "body": notes,
            "assets": [],
        })
        save(releases)
    elif command == "edit":
        release = find(releases, args[0])
        notes = option(args, "--notes-file")
        if notes:
            with open(notes) as f:
                release["body"] = f.read()
        if "--draft=false" in args:
            release["isDraft"] = False
        if "--prerelease" in args:
            release["isPrerelease"] = True
        if "--latest" in args and not release["isDraft"] and not release["isPrerelease"]:
            for other in releases:
                other["isLatest"] = False
            release["isLatest"] = True
        save(releases)
    elif command == "upload":
        release = find(releases, args[0])
        directory = os.path.join(STATE, "assets", release["tagName"])
        os.makedirs(directory, exist_ok=True)
        for path in (a for a in args[1:] if not a.startswith("--")):
            name = os.path.basename(path)
            with open(path, "rb") as f:
                digest = "sha256:" + hashlib.sha256(f.read()).hexdigest()
            if any(a["name"] == name for a in release["assets"]) and "--clobber" not in args:
                fail(f"asset under the same name already exists: [{name}]")
            shutil.copyfile(path, os.path.join(directory, name))
            release["assets"] = [a for a in release["assets"] if a["name"] != name]
            release["assets"].append({"name": name, "digest": digest})
        save(releases)
    else:
        fail(f"the gh stand-in does not know `gh release {command}`", 2)


main(sys.argv[1:])
