"""A local fake of the Hugging Face Hub API, for testing pushes with the real client.

It answers the endpoints `huggingface_hub.HfApi` calls for `create_repo` and
`upload_folder` / `create_commit` (huggingface_hub 1.x-2.x):

- `POST /api/repos/create` (name, organization, visibility or private, type);
- `POST /api/validate-yaml` (a README's metadata, checked before a commit);
- `POST /api/{type}s/{repo}/preupload/{revision}` (each file's upload mode: here always
  "regular", so contents travel base64 inside the commit and no LFS or Xet storage is needed);
- `POST /api/{type}s/{repo}/commit/{revision}` (the NDJSON commit: header, then files);
- `GET /api/{type}s/{repo}` (repo_info, which create_repo falls back on).

It keeps what arrived, so a test can assert on the repository's visibility, its files and
their bytes, and the token the client sent. Point the client at it with `endpoint=` or
`HF_ENDPOINT=<FakeHub.url>`. Anything else gets a 404 that names the unhandled request, so
a client that starts calling a new endpoint fails loudly here rather than passing silently.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

_REPO_CALL = re.compile(
    r"^/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+(?:/[^/]+)?)/(?P<call>preupload|commit)/(?P<rev>[^/?]+)"
)
_REPO_INFO = re.compile(r"^/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+(?:/[^/]+)?)/?$")


@dataclass
class FakeRepo:
    repo_id: str
    repo_type: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Call:
    method: str
    path: str
    authorization: str | None


class FakeHub:
    """The server and what it received; use as a context manager (`with FakeHub() as hub`)."""

    def __init__(self, require_token: str | None = None) -> None:
        self.require_token = require_token
        """When set, requests without `Authorization: Bearer <it>` get 401 like the Hub's."""
        self.repos: dict[str, FakeRepo] = {}
        self.calls: list[Call] = []
        self.preuploaded: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ---- the API ----------------------------------------------------------------------------
    def create_repo(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        org, name = payload.get("organization"), payload["name"]
        repo_id = f"{org}/{name}" if org else name
        kind = payload.get("type") or "model"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        url = self._repo_url(repo_id, kind)
        with self._lock:
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", "url": url}
            self.repos[repo_id] = FakeRepo(repo_id, kind, private)
        return 200, {"url": url, "name": repo_id}

    def validate_yaml(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        content = payload.get("content", "")
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            return 400, {"errors": [{"message": f"invalid YAML: {err}"}], "warnings": []}
        if meta is not None and not isinstance(meta, dict):
            return 400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def preupload(self, repo_id: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if repo_id not in self.repos:
            return 404, {"error": f"Repository not found: {repo_id}"}
        files = payload.get("files", [])
        self.preuploaded.extend(files)
        answer = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
            for f in files
        ]
        return 200, {"files": answer, "commitOid": None}

    def commit(self, repo_id: str, body: bytes) -> tuple[int, dict[str, Any]]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return 404, {"error": f"Repository not found: {repo_id}"}
        items = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next((i["value"] for i in items if i["key"] == "header"), {})
        added: dict[str, bytes] = {}
        for item in items:
            value = item["value"]
            if item["key"] == "file":
                raw = value["content"]
                data = base64.b64decode(raw) if value.get("encoding") == "base64" else raw.encode()
                added[value["path"]] = data
            elif item["key"] in ("lfsFile", "deletedFile", "deletedFolder", "copyFile"):
                return 400, {"error": f"this fake Hub takes regular files only, not {item['key']}"}
        oid = hashlib.sha1(body).hexdigest()
        with self._lock:
            repo.files.update(added)
            repo.commits.append(
                {"oid": oid, "summary": header.get("summary"), "files": sorted(added)}
            )
        url = f"{self._repo_url(repo_id, repo.repo_type)}/commit/{oid}"
        return 200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None}

    def repo_info(self, repo_id: str) -> tuple[int, dict[str, Any]]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return 404, {"error": f"Repository not found: {repo_id}"}
        sha = repo.commits[-1]["oid"] if repo.commits else "0" * 40
        siblings = [{"rfilename": name} for name in sorted(repo.files)]
        return 200, {"id": repo_id, "private": repo.private, "sha": sha, "siblings": siblings}

    def _repo_url(self, repo_id: str, kind: str) -> str:
        prefix = "" if kind == "model" else f"{kind}s/"
        return f"{self.url}/{prefix}{repo_id}"


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads `hub.calls`, not stderr

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 404:
                self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _authorised(self) -> bool:
            auth = self.headers.get("Authorization")
            hub.calls.append(Call(self.command, self.path, auth))
            if hub.require_token and auth != f"Bearer {hub.require_token}":
                self._answer(401, {"error": "Invalid credentials in Authorization header"})
                return False
            return True

        def do_POST(self) -> None:
            body = self._body()
            if not self._authorised():
                return
            path = self.path.split("?", 1)[0]
            if path == "/api/repos/create":
                self._answer(*hub.create_repo(json.loads(body)))
            elif path == "/api/validate-yaml":
                self._answer(*hub.validate_yaml(json.loads(body)))
            elif match := _REPO_CALL.match(path):
                if match["call"] == "preupload":
                    self._answer(*hub.preupload(match["repo"], json.loads(body)))
                else:
                    self._answer(*hub.commit(match["repo"], body))
            else:
                self._answer(404, {"error": f"the fake Hub does not handle POST {path}"})

        def do_GET(self) -> None:
            if not self._authorised():
                return
            path = self.path.split("?", 1)[0]
            if match := _REPO_INFO.match(path):
                self._answer(*hub.repo_info(match["repo"]))
            else:
                self._answer(404, {"error": f"the fake Hub does not handle GET {path}"})

    return Handler
