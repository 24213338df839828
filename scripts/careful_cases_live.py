"""The careful user's cases of live evaluation (scripts/careful_user.py): result ids and outcomes, an alias's
shadow, canary and policy, comparisons and promotions, through the CLI and REST. They run after the catalog's
cases, whose prompts t1 (alias prod, one version) and p-imp they use."""

from __future__ import annotations

from careful_cases import cli, rest
from careful_user import Case, bad, ok


def live() -> list[Case]:
    """Live evaluation: result ids and outcomes, an alias's shadow, canary and policy, comparisons, promotions."""
    none = "0" * 32
    out = [
        cli("live", "classify --prompt t1@prod 'a great movie' --json", ok('"id"')),
        cli("live", f"outcomes record --id {none} --label pos", ok("unknown")),
        cli("live", f"outcomes record --id {none} --label pos --json", ok('"unknown')),
        cli("live", "outcomes record --id abc", bad("--label", code=2)),
        cli("live", "outcomes record --label pos", bad("--id", code=2)),
        cli("live", "outcomes record", bad("FILE", code=2)),
        cli("live", "outcomes record $W/missing.csv", bad("$W/missing.csv", code=2)),
        cli("live", "outcomes record $W/dir", bad("$W/dir", code=2)),
        cli("live", "outcomes record $W/good.csv", bad("result_id", code=2)),
        cli("live", "outcomes record $W/empty.csv", bad("empty.csv", code=2)),
        cli("live", "outcomes record $W/packed.csv", bad("packed.csv", code=2)),
        cli("live", "prompts rollout t1@prod", ok("prompts/t1/versions/1")),
        cli("live", "prompts rollout t1@prod --json", ok('"name": "prompts/t1/aliases/prod/rollout"')),
        cli("live", "prompts rollout t1@nosuch", bad("nosuch", code=1)),
        cli("live", "prompts rollout t1", bad("t1", code=2)),
        cli("live", "prompts shadow t1@prod t1/versions/1", bad("version 1", code=1)),
        cli("live", "prompts shadow t1@prod t1/versions/9", bad("9", code=1)),
        cli("live", "prompts shadow t1@prod p-imp/versions/1", bad("p-imp", code=2)),
        cli("live", "prompts shadow t1@prod 2 --fraction 0", bad("--fraction", code=2)),
        cli("live", "prompts shadow t1@latest 1", bad("latest")),
        cli("live", "prompts canary t1@prod 1 --fraction 1.5", bad("--fraction", code=2)),
        cli("live", "prompts canary t1@prod 1 --fraction nan", bad("--fraction", code=2)),
        cli("live", "prompts canary t1@prod --clear", ok("t1@prod")),
        cli("live", "prompts policy t1@prod --auto --margin -0.1", bad("--margin", code=2)),
        cli("live", "prompts policy t1@prod --auto --min-rows -5", bad("--min-rows", code=2)),
        cli("live", "prompts policy t1@prod --auto --manual", bad("--manual", code=2)),
        cli("live", "prompts policy t1@prod --auto --margin 0.05 --min-rows 10", ok("t1@prod")),
        cli("live", "prompts policy t1@prod --manual", ok("t1@prod")),
        cli("live", "prompts compare t1@prod 9", bad("9", code=1)),
        cli("live", "prompts compare t1@prod 1", bad("version 1", code=1)),
        cli("live", "prompts promote t1@prod", bad("--candidate", code=2)),
        cli("live", "prompts promote t1@prod --candidate 9", bad("9", code=1)),
        cli("live", "prompts promote t1@prod --candidate 1 --margin 2", bad("--margin", code=2)),
        rest("live", "POST", "/v1/outcomes:record", {}, bad("outcomes", code=400)),
        rest("live", "POST", "/v1/outcomes:record", {"outcomes": [{"resultId": none, "label": ""}]},
             bad("label", code=400)),
        rest("live", "GET", "/v1/prompts/t1/aliases/prod/rollout", None, ok("prompts/t1/versions/1")),
        rest("live", "GET", "/v1/prompts/t1/aliases/prod:compare?candidate=t1/versions/9", None, bad("9", code=404)),
    ]
    return out
