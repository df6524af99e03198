"""python-gitlab, unmodified, against a running cfgstore.

Run by tests/gitlab_client.rs with BASE (the client's base URL) and TOKEN in
the environment. Any failed assertion exits non-zero with a traceback.
"""
import os

import gitlab

base, token = os.environ["BASE"], os.environ["TOKEN"]
gl = gitlab.Gitlab(base, private_token=token, per_page=5)

# Non-lazy project: every later call is built from the returned object.
project = gl.projects.get("b2b-cnc.erp-config")
assert project.id == "b2b-cnc.erp-config", project.id
assert project.default_branch == "main", project.default_branch

branches = project.branches.list(get_all=True)
names = sorted(b.name for b in branches)
assert names == ["main", "release/2026.1"], names
default = [b for b in branches if b.default]
assert [b.name for b in default] == ["main"]
assert len(default[0].commit["short_id"]) == 8
assert len(default[0].commit["id"]) == 40
assert [b.name for b in project.branches.list(search="^rel", get_all=True)] == ["release/2026.1"]
assert project.branches.get("release/2026.1").name == "release/2026.1"

# A recursive tree across several pages (per_page=5): Link headers followed verbatim.
tree = project.repository_tree(recursive=True, ref="main", get_all=True)
paths = [t["path"] for t in tree]
assert len(paths) == len(set(paths)) and len(paths) > 15, paths
assert "features/feature flags.json" in paths
assert "locales/de/maßeinheiten.yaml" in paths
# A page on its own, as `page=2` asks for it.
assert len(project.repository_tree(recursive=True, ref="main", page=2, per_page=5)) == 5
spaced = project.repository_tree(path="features", ref="main", get_all=True)
assert [t["name"] for t in spaced] == ["feature flags.json"], spaced
sub = project.repository_tree(path="config", ref="main", get_all=True)
assert sorted(t["name"] for t in sub) == ["bom", "machines", "pricing", "taxonomy"]

# Raw files: spaces, dots, non-ASCII; on a ref with '/'; and without a ref.
raw = project.files.raw(file_path="features/feature flags.json", ref="main")
assert b"liveOeeDashboard" in raw, raw
raw = project.files.raw(file_path="locales/de/maßeinheiten.yaml", ref="release/2026.1")
assert "länge".encode() in raw, raw
raw = project.files.raw(file_path="operations.config.json")
assert b"cluj-plant-2" in raw

# File metadata, decoded.
f = project.files.get(file_path="config/pricing/discounts.yaml", ref="release/2026.1")
assert f.file_name == "discounts.yaml"
assert b"minQty" in f.decode()
head = project.files.head("config/pricing/discounts.yaml", ref="main")
assert head["X-Gitlab-File-Path"] == "config/pricing/discounts.yaml"

# A blob by the id the tree gave.
blob_id = [t for t in tree if t["path"] == "operations.config.json"][0]["id"]
assert b"cluj-plant-2" in project.repository_raw_blob(blob_id)

# Errors surface with GitLab's statuses and messages.
try:
    project.files.raw(file_path="nope.json", ref="main")
    raise AssertionError("expected 404")
except gitlab.exceptions.GitlabGetError as e:
    assert e.response_code == 404 and "404 File Not Found" in str(e.error_message), e
try:
    gitlab.Gitlab(base, private_token="0" * 64).projects.get("b2b-cnc.erp-config")
    raise AssertionError("expected 401")
except gitlab.exceptions.GitlabAuthenticationError as e:
    assert e.response_code == 401, e

# Who am I, and which projects may I read (both answer for a read token).
gl.auth()
assert gl.user.username == "demo", gl.user.username
listed = sorted(p.path_with_namespace for p in gl.projects.list(get_all=True))
assert listed == ["demo/b2b-cnc.erp-config", "public/units.erp-config"], listed

# A tree listed once, then every file fetched at that same state: the
# branch's commit id pins the reads even if the branch moves meanwhile.
pinned = default[0].commit["id"]
pinned_tree = project.repository_tree(recursive=True, ref=pinned, get_all=True)
assert [t["path"] for t in pinned_tree] == paths
first_file = [t for t in pinned_tree if t["type"] == "blob"][0]["path"]
assert project.files.raw(file_path=first_file, ref=pinned)

print("python-gitlab: all checks passed")
