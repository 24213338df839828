"""The web console in a real browser (Debian's headless Chromium through chromedriver) against a real coordinator:
the catalog lists a trained prompt, the playground shows the gRPC API's scores, a job page's curve grows while the
job trains, a reader can neither see nor use an alias move, the audit page lists writes for admins only, and a
crafted job link reaches no other resource (issue 30, item 8). Set PROMPTBANK_SCREENSHOT=docs/console.png to
refresh the README's screenshot from the job page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from bank.codec import encode_prompt
from bank.peft_format import export_peft
from promptbank_api.v1 import jobs_pb2 as jp
from tests.rest_fixtures import RestStack
from tests.test_server import DATA, input_hp

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000")
WAIT_S = 60
TASK = {"labels": ["negative", "positive"]}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("headless Chromium is missing: run scripts/bootstrap.sh as root, or "
                    "apt-get install -y chromium chromium-driver", pytrace=False)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, cond, timeout: float = WAIT_S):  # type: ignore[no-untyped-def]
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: cond(d))


def css(driver: WebDriver, selector: str):  # type: ignore[no-untyped-def]
    return driver.find_elements(By.CSS_SELECTOR, selector)


def text_of(driver: WebDriver, element_id: str) -> str:
    """An element's text read in one step (the job page redraws as events arrive: no stale references)."""
    return str(driver.execute_script("return document.getElementById(arguments[0])?.textContent ?? ''", element_id))


def sign_in(driver: WebDriver, stack: RestStack, role: str, page: str = "#/catalog") -> None:
    driver.get(stack.url + page)
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    wait(driver, lambda d: css(d, "#signed-out"))  # tokens on: nothing but the sign-in until a token is given
    driver.find_element(By.ID, "token").send_keys(stack.tokens[role])
    driver.find_element(By.ID, "signin-button").click()
    wait(driver, lambda d: d.find_element(By.ID, "whoami").get_attribute("data-role") == role)


def test_the_catalog_lists_a_trained_prompt(browser: WebDriver, rest_stack: RestStack) -> None:
    sign_in(browser, rest_stack, "admin")
    row = wait(browser, lambda d: css(d, 'tr.prompt-row[data-name="prompts/rest-sentiment"]'))[0]
    assert "prod → v1" in row.text and "negative, positive" in row.text
    search = browser.find_element(By.ID, "search")
    search.send_keys("zzz-no-such")
    wait(browser, lambda d: not css(d, "tr.prompt-row"))
    search.send_keys(Keys.CONTROL, "a")
    search.send_keys("rest-sent")  # typed: the list filters as it changes
    wait(browser, lambda d: [r.get_attribute("data-name") for r in css(d, "tr.prompt-row")] == ["prompts/rest-sentiment"])
    browser.find_element(By.CSS_SELECTOR, 'tr.prompt-row[data-name="prompts/rest-sentiment"] a').click()
    version = wait(browser, lambda d: css(d, 'tr.version-row[data-version="1"]'))[0]
    assert "eval_accuracy" in version.text and "job" in version.text and "by admin" in version.text
    assert "prod" in browser.find_element(By.ID, "alias-history").text
    assert browser.find_element(By.ID, "alias-form").is_displayed()  # an admin may move aliases
    assert browser.execute_script("return localStorage.length") == 0  # the token lives in the tab's session only


def test_the_playground_shows_the_grpc_scores(browser: WebDriver, rest_stack: RestStack) -> None:
    texts = ["good great lovely", "sad horrible hate"]
    sign_in(browser, rest_stack, "reader", "#/playground")
    area = wait(browser, lambda d: css(d, "#texts"))[0]
    area.clear()
    area.send_keys("\n".join(texts))
    for prompt in ("rest-sentiment", rest_stack.lm_prompt):  # two tasks on two backbones in one request
        browser.find_element(By.CSS_SELECTOR, f'input.pick[data-prompt="{prompt}"]').click()
    browser.find_element(By.ID, "classify").click()
    wait(browser, lambda d: len(css(d, "td.result")) == 4)
    pairs = [(t, p) for t in texts for p in ("rest-sentiment", rest_stack.lm_prompt)]
    with rest_stack.client("reader") as c:
        want = dict(zip(pairs, c.classify([(p, t) for t, p in pairs]), strict=True))
    seen = set()
    for row in css(browser, "tr.result-row"):
        for cell in row.find_elements(By.CSS_SELECTOR, "td.result"):
            key = (row.get_attribute("data-text"), cell.get_attribute("data-prompt"))
            pred = want[key]
            seen.add(key)
            assert (cell.get_attribute("data-label"), cell.get_attribute("data-version")) == (pred.label, pred.version)
            shown = {s.get_attribute("data-label"): float(s.get_attribute("data-score"))
                     for s in cell.find_elements(By.CSS_SELECTOR, "span.score")}
            assert shown == pred.scores  # exactly: the same doubles
    assert seen == set(pairs)

    # an ensemble: the prompt averaged with its version 1, in the same forward
    browser.find_element(By.CSS_SELECTOR, f'input.pick[data-prompt="{rest_stack.lm_prompt}"]').click()
    browser.find_element(By.CSS_SELECTOR, '.picker[data-prompt="rest-sentiment"] .ensemble').send_keys("1")
    browser.find_element(By.ID, "classify").click()
    wait(browser, lambda d: len(css(d, "td.result")) == 2)
    with rest_stack.client("reader") as c:
        averaged = c.classify_ensemble([(["rest-sentiment", "rest-sentiment/versions/1"], t) for t in texts])
    for cell, pred in zip(css(browser, "td.result"), averaged, strict=True):
        assert "1 + 1" in cell.text  # both members named
        assert {s.get_attribute("data-label"): float(s.get_attribute("data-score"))
                for s in cell.find_elements(By.CSS_SELECTOR, "span.score")} == pred.scores


def test_the_playground_compares_two_versions(browser: WebDriver, rest_stack: RestStack, tiny_encoder: str) -> None:
    """Two versions of one prompt (random prompts, seeds 0 and 2) that the gRPC API says agree on some texts and
    not on others: the page must show each version's label per text and count the agreements."""
    texts = ["good great lovely", "sad horrible hate", "fine"]
    versions = [f"prompts/rest-compare/versions/{v}" for v in (1, 2)]
    with rest_stack.client() as admin:
        if not any(p.name == "prompts/rest-compare" for p in admin.list_prompts()):
            for seed in (0, 2):
                prompt = encode_prompt(torch.randn(4, 32, generator=torch.Generator().manual_seed(seed)) * 0.5)
                config, weights = export_peft(prompt, base_model=tiny_encoder, revision="", architecture="encoder",
                                              num_virtual_tokens=4, token_dim=32, task=TASK, extra=None)
                admin.import_version("rest-compare", "enc", config, weights, labels=TASK["labels"])
        want = [tuple(admin.classify([(v, t)])[0].label for v in versions) for t in texts]  # (A: v1, B: v2)
    agree = sum(a == b for a, b in want)
    assert 0 < agree < len(texts), f"the versions must agree on some texts and not on others: {want}"

    sign_in(browser, rest_stack, "reader", "#/playground")
    area = wait(browser, lambda d: css(d, "#texts"))[0]
    area.clear()
    area.send_keys("\n".join(texts))
    Select(browser.find_element(By.ID, "compare-prompt")).select_by_value("rest-compare")
    wait(browser, lambda d: [o.text for o in Select(d.find_element(By.ID, "compare-b")).options] == ["v2", "v1"])
    assert [browser.find_element(By.ID, f"compare-{side}").get_attribute("value") for side in "ab"] == versions
    browser.find_element(By.ID, "compare").click()
    assert wait(browser, lambda d: text_of(d, "agreement")) == f"agree on {agree} of {len(texts)} texts"
    shown = [(row.find_elements(By.TAG_NAME, "td")[0].text,
              tuple(td.find_element(By.TAG_NAME, "strong").text for td in row.find_elements(By.TAG_NAME, "td")[1:3]))
             for row in css(browser, "tr.compare-row")]
    assert shown == list(zip(texts, want, strict=True))


def test_a_job_page_curve_grows_while_the_job_trains(browser: WebDriver, rest_stack: RestStack) -> None:
    with rest_stack.client() as admin:
        job = admin.create_train_job("rest-live", "enc", DATA, hyperparameters=input_hp(
            num_virtual_tokens=2, batch_size=4, epochs=1000, max_steps=100_000, checkpoint_every=100_000))
    sign_in(browser, rest_stack, "admin", f"#/jobs/{job.name.split('/')[-1]}")

    def points(d: WebDriver) -> int:
        return int(d.execute_script(
            "return document.querySelector('g.series[data-series=\"loss\"]')?.dataset.points ?? 0"))

    first = wait(browser, lambda d: points(d) >= 2 and points(d))
    wait(browser, lambda d: points(d) >= first + 3)  # more points arrive while it trains: the page follows the job
    assert text_of(browser, "job-state") == "RUNNING"
    shot = os.environ.get("PROMPTBANK_SCREENSHOT")
    if shot:  # the README's picture: a curve with some history
        wait(browser, lambda d: points(d) >= 40, timeout=180)
        browser.save_screenshot(shot)
    browser.find_element(By.ID, "cancel-job").click()
    wait(browser, lambda d: text_of(d, "job-state") == "CANCELLED")
    with rest_stack.client() as admin:
        assert admin.get_job(job.name).state == jp.TrainJob.CANCELLED


def test_a_reader_cannot_move_an_alias(browser: WebDriver, rest_stack: RestStack) -> None:
    sign_in(browser, rest_stack, "reader", "#/prompts/rest-sentiment")
    wait(browser, lambda d: css(d, 'tr.version-row[data-version="1"]'))
    with pytest.raises(NoSuchElementException):
        browser.find_element(By.ID, "alias-form")  # hidden: the role lacks it
    assert not css(browser, ".tags-save")
    status, body = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch("/v1/prompts/rest-sentiment:setAlias", {method: "POST", body: JSON.stringify({alias: "prod", version: "1"}),
              headers: {"Authorization": "Bearer " + sessionStorage.getItem("promptbank.token"),
                        "Content-Type": "application/json"}})
          .then(async (r) => done([r.status, await r.json()]));""")
    assert status == 403 and body["code"] == 7 and "SetAlias needs the admin role" in body["message"]
    with rest_stack.client() as admin:
        assert all(e.principal != "rest-reader" for e in admin.alias_history("rest-sentiment"))


def test_the_audit_page_lists_writes_for_admins_only(browser: WebDriver, rest_stack: RestStack) -> None:
    sign_in(browser, rest_stack, "reader")
    assert not browser.find_element(By.CSS_SELECTOR, 'a[data-nav="audit"]').is_displayed()  # the role lacks it
    sign_in(browser, rest_stack, "admin", "#/audit")
    assert browser.find_element(By.CSS_SELECTOR, 'a[data-nav="audit"]').is_displayed()
    wait(browser, lambda d: css(d, "tr.audit-row"))
    browser.find_element(By.ID, "audit-principal").send_keys("admin")
    browser.find_element(By.ID, "audit-method").send_keys("CreateToken")
    browser.find_element(By.CSS_SELECTOR, "#audit-filters button[type=submit]").click()
    with rest_stack.client() as admin:
        want = [e.name for e in admin.list_audit_events(principal="admin", method="CreateToken")]
    assert len(want) >= 2  # the stack's reader and trainer tokens
    wait(browser, lambda d: [r.get_attribute("data-name") for r in css(d, "tr.audit-row")] == want)
    assert all("CreateToken" in r.text and "tokens/rest-" in r.text for r in css(browser, "tr.audit-row"))


def http_calls(stack: RestStack) -> dict[str, float]:
    """RPCs answered over HTTP so far, by method (every status counted)."""
    out: dict[str, float] = {}
    for metric in stack.live.coord.metrics.registry.collect():
        for s in metric.samples:
            if s.name == "promptbank_rpcs_total" and s.labels.get("transport") == "http":
                out[s.labels["method"]] = out.get(s.labels["method"], 0) + s.value
    return out


def test_a_crafted_job_link_reaches_no_other_resource(browser: WebDriver, rest_stack: RestStack) -> None:
    """Issue 30, item 8: the job page takes its id from the location hash, which the router percent-decodes. A link
    whose id holds `/`, `..`, `?` or `#` must not make the console fetch (or act on) anything but that one job: each
    id is one encoded path segment, and `..` is refused before any fetch."""
    sign_in(browser, rest_stack, "admin")
    wait(browser, lambda d: css(d, "tr.prompt-row"))
    before = http_calls(rest_stack)
    job_id = rest_stack.job.name.split("/")[-1]
    for crafted in ("..%2Fprompts%2Frest-sentiment", "..%2Ftokens%3F", "..%2Fprompts%2Frest-sentiment%23",
                    f"{job_id}%2F..%2F..%2Fprompts%2Frest-sentiment", "%2E%2E", "..", "x%3FpageSize%3D1"):
        browser.execute_script("document.getElementById('view').replaceChildren(); location.hash = arguments[0]",
                               f"#/jobs/{crafted}")
        shown = wait(browser, lambda d: css(d, "#view p.error, #job-info"))[0]
        assert shown.tag_name == "p", f"#/jobs/{crafted} rendered a page from another resource"
    after = http_calls(rest_stack)
    reached = {m for m in after if after[m] != before.get(m, 0)}
    assert reached <= {"GetTrainJob"}, f"a crafted job link made the console call {sorted(reached)}"
    assert text_of(browser, "view")  # and says why


def test_numbers_read_as_people_write_them_and_a_result_links_to_its_prompt(browser: WebDriver,
                                                                            rest_stack: RestStack) -> None:
    """Counts as integers (57, not 57.000), the job's result a link, a local model path shortened (the whole
    path on hover)."""
    with rest_stack.client() as admin:
        done = next(j for j in admin.list_jobs() if j.state == jp.TrainJob.SUCCEEDED and j.prompt.endswith("rest-sentiment"))
        count = int(done.metrics["train_examples"])
    sign_in(browser, rest_stack, "admin", f"#/jobs/{done.name.split('/')[-1]}")
    # read in one step each (the job page redraws as its events arrive: no element references kept)
    link = wait(browser, lambda d: d.execute_script(
        "const a = document.querySelector('#job-result a'); return a && [a.textContent, a.getAttribute('href')]"))
    assert link[0] == done.result_version and link[1].endswith("#/prompts/rest-sentiment"), link
    metrics = str(browser.execute_script("return [...document.querySelectorAll('dt')].find((t) => "
                                         "t.textContent === 'metrics')?.nextElementSibling?.textContent ?? ''"))
    assert f"train_examples {count}," in metrics + "," and f"train_examples {count}.000" not in metrics, metrics
    browser.get(rest_stack.url + "#/catalog")
    cells = wait(browser, lambda d: css(d, "td.model"))
    deep = [c for c in cells if (c.get_attribute("title") or "").startswith("/")
            and len([p for p in c.get_attribute("title").split("/") if p]) > 2]  # the tests' models: under a tmp dir
    assert deep and all(c.text.startswith("…/") and c.get_attribute("title").endswith(c.text[2:]) for c in deep), \
        [(c.text, c.get_attribute("title")) for c in cells]


def test_a_version_page_shows_live_accuracy_and_the_prompt_page_each_alias_rollout(browser: WebDriver,
                                                                                  rest_stack: RestStack,
                                                                                  tiny_encoder: str) -> None:
    """Three random versions of one prompt: v1 behind `prod`, v2 its shadow, v3 its canary on a share of the routing
    keys. After outcomes come back, the version page shows what GetPromptVersion's `live` says (all time, recent,
    interval, confusion) and the prompt page each alias's rollout with what GetRollout's evidence says."""
    texts = ["good great lovely", "sad horrible hate", "fine", "bad awful terrible", "wonderful happy joy", "meh"]
    truth = ["positive", "negative", "positive", "negative", "positive", "negative"]
    with rest_stack.client() as admin:
        for seed in (3, 4, 5):
            prompt = encode_prompt(torch.randn(4, 32, generator=torch.Generator().manual_seed(seed)) * 0.5)
            config, weights = export_peft(prompt, base_model=tiny_encoder, revision="", architecture="encoder",
                                          num_virtual_tokens=4, token_dim=32, task=TASK, extra=None)
            admin.import_version("rest-rollout", "enc", config, weights, labels=TASK["labels"])
        admin.set_alias("rest-rollout", "prod", 1)
        admin.set_shadow("rest-rollout@prod", 2)
        admin.set_canary("rest-rollout@prod", 3, 0.3)
        preds = admin.classify([("rest-rollout@prod", t) for t in texts] * 4,
                               routing_key=[f"user-{i}" for i in range(4 * len(texts))])
        admin.record_outcomes([(p.id, truth[i % len(texts)]) for i, p in enumerate(preds)])
        live = admin.get_version("rest-rollout/versions/1").live
        rollout = admin.rollout("rest-rollout@prod")
    assert live.all_time.labelled > 0 and rollout.shadow_evidence.method == "paired"

    sign_in(browser, rest_stack, "reader", "#/prompts/rest-rollout")
    card = wait(browser, lambda d: css(d, '#rollouts .rollout[data-alias="prod"]'))[0]
    shadow = card.find_element(By.CSS_SELECTOR, ".shadow")
    assert shadow.get_attribute("data-version") == "prompts/rest-rollout/versions/2"
    assert (shadow.get_attribute("data-method"), int(shadow.get_attribute("data-rows"))) == (
        "paired", rollout.shadow_evidence.rows)
    assert rollout.shadow_evidence.summary in shadow.text
    canary = card.find_element(By.CSS_SELECTOR, ".canary")
    assert canary.get_attribute("data-version") == "prompts/rest-rollout/versions/3" and "0.300 of rows" in canary.text
    assert (canary.get_attribute("data-method"), int(canary.get_attribute("data-rows"))) == (
        rollout.canary_evidence.method, rollout.canary_evidence.rows)
    assert "policy: manual" in card.text
    assert not css(browser, '#rollouts .rollout[data-alias="latest"]')  # every publish moves latest: no rollout

    browser.find_element(By.CSS_SELECTOR, 'tr.version-row[data-version="1"] a.version-link').click()
    row = wait(browser, lambda d: css(d, "#live-all-time"))[0]
    for span, el in ((live.all_time, row), (live.recent, browser.find_element(By.ID, "live-recent"))):
        assert [int(el.get_attribute(f"data-{k}")) for k in ("served", "labelled", "correct")] == [
            span.served, span.labelled, span.correct]
        assert [float(el.get_attribute(f"data-{k}")) for k in ("accuracy", "low", "high")] == pytest.approx(
            [span.accuracy, span.low, span.high])
    assert "last 24 h" in text_of(browser, "live-recent")  # (the header cell is upper-cased by the style)
    cells = {(td.find_element(By.XPATH, "..").get_attribute("data-label"), td.get_attribute("data-predicted")):
             int(td.text) for td in css(browser, "#confusion tbody td")}
    want = {(c.label, c.predicted): c.count for c in live.all_time.confusion}
    assert {k: v for k, v in cells.items() if v} == want and sum(cells.values()) == live.all_time.labelled
