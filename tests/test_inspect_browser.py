"""The page of ``rnnkit inspect`` in a real browser (headless Chromium driven by Playwright):
tokens render, only the visible lines are drawn, choosing a unit recolours the text, hovering
shows the token, the gradient mode draws, a selected span finds units, no console error and
no network request; a screenshot is saved.

Needs the ``playwright`` package (test extras) and a Chromium: Debian's ``chromium`` package,
which ``.ci/run`` installs (Playwright's own browser download cannot run on these machines).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rnnkit.inspect_page import write_page
from rnnkit.inspector import recording, states
from rnnkit.pipeline import Task, train

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (test extras)")
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                  "google-chrome"))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="no Chromium (apt-get install chromium; .ci/run does)")
# Flags for a machine without network or display: no background services that call out.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TEXT = 'def f(x):\n    return [x, "y", (x + 1)]\n\n' * 300


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    (root / "code.txt").write_text(TEXT, encoding="utf-8")
    train("lm", root / "code.txt", root / "run", hidden=6, embedding_dim=4, layers=2,
          epochs=1, batch_size=4, bptt=32, progress=False)
    meta = write_page(root / "run", root / "code.txt", root / "page.html", max_tokens=5000)
    assert meta["tokens"] == 5000 and meta["bytes"] < 3e6
    return root / "page.html"


def _true_values(run, text: str) -> np.ndarray:
    """(T, U) unit values of the run on the text, in the page's group order."""
    task = Task.load(run)
    rnn = task.model.layers["rnn"]
    ids = np.array([task.vocab.encode(list(text))])
    with task.model.evaluating(), recording(rnn) as calls:
        task.model._logits(ids, None)
    found = states(rnn, *calls[0])
    return np.concatenate(list(found.values()), axis=1)


@pytest.fixture(scope="module")
def other_pages(tmp_path_factory):
    """Pages of a classifier, a CRF tagger (gold tags) and a translation model."""
    root = tmp_path_factory.mktemp("others")
    (root / "cls.tsv").write_text("a fine cat\tpos\na bad dog\tneg\n" * 10, encoding="utf-8")
    (root / "tags.conll").write_text("1\tThe\tB-X\n2\tcat\tI-X\n3\tsat\tO\n\n" * 20,
                                     encoding="utf-8")
    (root / "pairs.txt").write_text("the cat\tle chat\na dog\tun chien\n" * 10,
                                    encoding="utf-8")
    small = dict(hidden=5, embedding_dim=4, epochs=1, progress=False)
    train("classify", root / "cls.tsv", root / "cls", **small)
    train("tag", root / "tags.conll", root / "tag", crf=True, **small)
    train("translate", root / "pairs.txt", root / "mt", attention="dot", **small)
    pages = {}
    for name, data in (("cls", "cls.tsv"), ("tag", "tags.conll"), ("mt", "pairs.txt")):
        pages[name] = root / f"{name}.html"
        write_page(root / name, root / data, pages[name])
    return pages


@pytest.mark.parametrize("name, hover", [("cls", "the text's class"), ("tag", "gold: I-X"),
                                         ("mt", "output tokens attending here")])
def test_every_task_s_page_opens_without_errors(other_pages, name, hover):
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(other_pages[name].as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=15000)
            page.hover("[data-token-index='1']")
            assert hover in page.inner_text("#tip")
        finally:
            browser.close()
    assert errors == []


def test_the_page_works_in_chromium(page_file, tmp_path):
    errors, requests = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=15000)

            # The page decodes the values it was given: within half a code of the truth.
            true = _true_values(page_file.parent / "run", TEXT[:5000])
            rng = np.random.default_rng(0)
            for u, t in zip(rng.integers(0, true.shape[1], 40), rng.integers(0, 5000, 40),
                            strict=True):
                lo, hi = true[:, u].min(), true[:, u].max()
                got = page.evaluate(f"value({u}, {t})")
                assert abs(got - true[t, u]) <= (hi - lo) / 30 + 1e-6

            tokens = page.locator("[data-token-index]")
            drawn = tokens.count()
            assert 0 < drawn < 5000  # only the visible lines
            assert tokens.first.get_attribute("data-token-index") == "0"
            colours = "() => [...document.querySelectorAll('[data-token-index]')]" \
                      ".slice(0, 60).map(e => e.style.background)"
            before = page.evaluate(colours)
            current = page.locator("#units button.on").get_attribute("data-unit")
            other = page.locator(f"#units button:not([data-unit='{current}'])").first
            other.click()
            assert page.locator("#units button.on").get_attribute("data-unit") != current
            assert page.evaluate(colours) != before  # recoloured at once

            page.hover("[data-token-index='3']")
            assert page.locator("#tip").is_visible() and "#3" in page.inner_text("#tip")
            assert "next token" in page.inner_text("#tip")

            page.check("input[value=gradient]")
            page.click("[data-token-index='40']")
            assert page.locator("#gradplot svg path").count() == 1
            shade = page.get_attribute("[data-token-index='35']", "style")
            assert "rgba(240,140,0," in shade.replace(" ", "")

            page.check("input[value=unit]")
            page.evaluate("""() => {
                const a = document.querySelector("[data-token-index='4']");
                const b = document.querySelector("[data-token-index='9']");
                const r = document.createRange();
                r.setStart(a.firstChild, 0); r.setEnd(b.firstChild, 1);
                getSelection().removeAllRanges(); getSelection().addRange(r);
                document.getElementById("scroll").dispatchEvent(
                    new MouseEvent("mouseup", {bubbles: true}));
            }""")
            assert "tokens 4–9" in page.inner_text("#span")

            page.evaluate("() => { const s = document.getElementById('scroll');"
                          " s.scrollTop = s.scrollHeight; s.dispatchEvent(new Event('scroll')); }")
            page.wait_for_selector("[data-token-index='4999']", timeout=5000)
            shot = tmp_path / "inspect.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
