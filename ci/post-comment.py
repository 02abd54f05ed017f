#!/usr/bin/env python3
"""Posts PruneCheck's Markdown summary as one sticky comment on the pull or merge request, or
updates the comment it posted before (found by the summary's first line,
`<!-- prunecheck-summary -->`). Standard library only.

    python3 post-comment.py reports/prunecheck.md

GitHub Actions: needs GITHUB_TOKEN (with `pull-requests: write`), GITHUB_REPOSITORY,
GITHUB_EVENT_PATH of a pull_request event. GitLab CI: needs PRUNECHECK_GITLAB_TOKEN (a project
access token with the `api` scope; CI_JOB_TOKEN cannot write notes), CI_API_V4_URL,
CI_PROJECT_ID, CI_MERGE_REQUEST_IID. Elsewhere, or without a token (a fork's pull request), it
says why and exits 0: a comment must never fail the check."""
import json, os, sys, urllib.request

MARKER = "<!-- prunecheck-summary -->"


def call(method, url, headers, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={**headers, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null"), response.headers


def pages(url, headers):
    """Every item of a paginated list (both APIs take per_page and page)."""
    page = 1
    while True:
        items, _ = call("GET", f"{url}{'&' if '?' in url else '?'}per_page=100&page={page}", headers)
        if not items:
            return
        yield from items
        page += 1


def main(path):
    body = open(path, encoding="utf-8").read()
    if not body.startswith(MARKER):
        body = MARKER + "\n" + body
    env = os.environ
    if env.get("GITHUB_ACTIONS") == "true":
        event = json.load(open(env["GITHUB_EVENT_PATH"])) if env.get("GITHUB_EVENT_PATH") else {}
        number = (event.get("pull_request") or {}).get("number")
        token = env.get("GITHUB_TOKEN")
        if not number or not token:
            return print("post-comment: not a pull request, or no GITHUB_TOKEN: no comment")
        api = env.get("GITHUB_API_URL", "https://api.github.com")
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
        base = f"{api}/repos/{env['GITHUB_REPOSITORY']}/issues"
        mine = next((c for c in pages(f"{base}/{number}/comments", headers) if (c.get("body") or "").startswith(MARKER)), None)
        if mine:
            call("PATCH", f"{base}/comments/{mine['id']}", headers, {"body": body})
        else:
            call("POST", f"{base}/{number}/comments", headers, {"body": body})
    elif env.get("GITLAB_CI") == "true":
        iid, token = env.get("CI_MERGE_REQUEST_IID"), env.get("PRUNECHECK_GITLAB_TOKEN")
        if not iid or not token:
            return print("post-comment: not a merge request, or no PRUNECHECK_GITLAB_TOKEN: no note")
        headers = {"PRIVATE-TOKEN": token}
        base = f"{env['CI_API_V4_URL']}/projects/{env['CI_PROJECT_ID']}/merge_requests/{iid}/notes"
        mine = next((n for n in pages(f"{base}?sort=asc", headers) if (n.get("body") or "").startswith(MARKER)), None)
        if mine:
            call("PUT", f"{base}/{mine['id']}", headers, {"body": body})
        else:
            call("POST", base, headers, {"body": body})
    else:
        return print("post-comment: neither GitHub Actions nor GitLab CI: no comment")
    print("post-comment: summary posted")


if __name__ == "__main__":
    try:
        main(sys.argv[1] if len(sys.argv) > 1 else "prunecheck-reports/prunecheck.md")
    except Exception as e:  # a comment that cannot be written is a note, not a failed check
        print(f"post-comment: could not post the summary ({e})", file=sys.stderr)
