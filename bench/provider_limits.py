"""API providers' rate limits: how many requests cai loses to them, and how far it goes over.

A provider caps requests and tokens per minute and refuses what goes over with HTTP 429 and
`Retry-After`. The local OpenAI-compatible stub (`cai.testing.openai_stub`) enforces such caps
over a sliding window. Its window is 6 s here instead of 60 s (the caps scaled to match), so
each case takes seconds, not minutes; the client is the `openai` backend as a judge run uses it.

Cases: the client told the requests-per-minute cap; told the tokens-per-minute cap; and told
nothing (a 429 storm it must ride out on `Retry-After`). For each: requests lost (failed after
retries), requests refused as a share of those the provider accepted (how far over the allowed
rate the client sent), and the accepted rate against the cap (how much of the allowance it used).
"""

from __future__ import annotations

import argparse
import os
import time

from common import fmt_ratio, print_header, record_result, table

WINDOW_S = 6.0
RPM = 60  # per window: 10 requests a second
TPM = 600  # per window: 100 tokens a second
HEADER = ["case", "requests", "lost", "refused (429)", "over the cap", "allowance used",
          "seconds", "final concurrency"]  # fmt: skip


def run_case(name: str, requests: int, stub_limits, client_limits) -> dict:
    from cai.backends.base import GenerationParams
    from cai.backends.openai_server import OpenAIServerBackend
    from cai.testing.openai_stub import OpenAIStub

    prompts = [f"prompt number {i:05d} about tea" for i in range(requests)]
    with OpenAIStub(stub_limits) as stub:
        backend = OpenAIServerBackend(
            [stub.url], "stub", show_progress=False, limits=client_limits, max_retries=5
        )
        try:
            started = time.monotonic()
            out = backend.generate_text(prompts, GenerationParams(max_tokens=4))
            seconds = time.monotonic() - started
            stats = backend.endpoint_stats()[0]
        finally:
            backend.close()
        admitted, refused, tokens = len(stub.log.admitted), stub.log.refused, stub.log.tokens
    lost = sum(g.failed for g in out)
    cap_rps = (RPM if name != "tokens per minute told" else TPM) / WINDOW_S
    used = (admitted if name != "tokens per minute told" else tokens) / seconds
    return {
        "case": name,
        "requests": requests,
        "lost": lost,
        "refused": refused,
        "admitted": admitted,
        "seconds": seconds,
        "over": refused / max(1, admitted),
        "allowance_used": used / cap_rps,
        "concurrency": stats["concurrency"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--quick", action="store_true", help="120 requests per case")
    args = parser.parse_args()
    if args.quick:
        args.requests = 120
    from cai.backends.http_limits import EndpointLimits
    from cai.testing.openai_stub import StubLimits

    per_minute = 60.0 / WINDOW_S
    cases = [
        ("requests per minute told", StubLimits(rpm=RPM, window_s=WINDOW_S),
         EndpointLimits(requests_per_minute=RPM * per_minute)),
        ("tokens per minute told", StubLimits(tpm=TPM, window_s=WINDOW_S),
         EndpointLimits(tokens_per_minute=TPM * per_minute)),
        ("nothing told (429 + Retry-After)", StubLimits(rpm=RPM, window_s=WINDOW_S),
         EndpointLimits()),
    ]  # fmt: skip
    load = os.getloadavg()[0]
    print_header(f"provider limits: {args.requests} requests per case")
    got = [run_case(name, args.requests, stub, client) for name, stub, client in cases]
    rows = [
        [g["case"], g["requests"], g["lost"], g["refused"], f"{g['over']:.1%}",
         f"{g['allowance_used']:.0%}", f"{g['seconds']:.1f}", g["concurrency"]]
        for g in got
    ]  # fmt: skip
    lost = sum(g["lost"] for g in got) / sum(g["requests"] for g in got)
    worst_over = max(g["over"] for g in got)
    details = "\n".join(
        [
            f"The `openai` backend against the local rate-limiting stub: caps of {RPM} requests "
            f"or {TPM} tokens per {WINDOW_S:.0f} s window (a provider's per-minute window scaled "
            f"down 10x, so a case takes seconds), `max_tokens=4`, {args.requests} requests per "
            "case, `max_retries=5`. Refused = answered 429 (as a share of the requests the stub "
            "accepted: how far over the allowed rate the client sent). Allowance used = the "
            "accepted rate / the cap.",
            "",
            table(HEADER, rows),
            "",
            f"- 1-minute load average at the start: {load:.1f}.",
        ]
    )
    print(details)
    record_result(
        "provider_limits",
        {
            "title": "10. API providers' rate limits: lost and refused requests",
            "command": f"python bench/provider_limits.py --requests {args.requests}",
            "summary": [
                ["requests lost to rate limits (target <= 2%)", f"{lost:.1%}"],
                [
                    "most requests refused over the cap, of those accepted (target <= 10%)",
                    f"{worst_over:.1%}",
                ],
                [
                    "allowance used when told the requests-per-minute cap",
                    fmt_ratio(got[0]["allowance_used"]),
                ],
            ],
            "details": details,
            "raw": {"cases": got, "load": load},
        },
    )


if __name__ == "__main__":
    main()
