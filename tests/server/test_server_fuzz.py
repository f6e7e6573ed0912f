"""Fuzzing every input of every Stepwise node through /prompt, and interrupting a running Stepwise workflow.

The cases come from the server's own ``/object_info`` (every node whose class starts with ``Stepwise``, every
input it declares) and from the example API workflows (a workflow holding the node, made cheap: small latents,
few steps). One input of one node is changed at a time: wrong types, values below the minimum and above the
maximum, huge numbers, NaN, values outside a combo's list, empty, malformed and huge strings, links to an output
of the wrong type or to a node that does not exist. Each case must be refused by the host's validation naming the
input, or fail while executing with a message naming the input (or the bad value), or, where the value is
legitimately usable (an empty or long free text, a huge seed within range), succeed with a real image. After the
fuzzing the server is up, and three Stepwise workflows (eight of the node types), their Stepwise nodes executed
afresh on the models the fuzzing left cached, give the same images as before it (no state or patch left behind).
A second test interrupts a running Prompt-to-Prompt sampler through /interrupt and runs the prompt again.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import numpy as np
import pytest

from stepwise_dev import paths, workflow

pytestmark = pytest.mark.server
log = logging.getLogger(__name__)

PREFIX = "Stepwise"
NONCE = "stepwise_fuzz_nonce"  # an input no node declares: ignored by validation and execution, but part of the
# host's cache key, so a prompt carrying a new nonce re-executes that node and what depends on it
MISSING_NODE = "9999"
HUGE_TEXT = "x" * 100_000
MALFORMED_JSON = '{"nose": [355, 87], "eye_left": ['
GRAPHS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graphs")  # the mechanics graphs (tiny zoo)
# Workflow to fuzz a node in, when several hold it (otherwise: the one with the fewest nodes, then by name).
PREFERRED = {"StepwisePromptToPromptAttn": "graphs/prompt_to_prompt_replace",
             "StepwiseKeypointCondition": "keypoint_condition_json"}
# STRING inputs and what they hold: "text" is free text (any string is a prompt), "json" a pose as JSON,
# "word_values" ``word:value`` pairs, "words" words that must occur in a prompt. A new STRING input must be
# classified here (the test says so), so that its malformed values are judged by what it takes.
STRING_KINDS = {
    ("StepwisePromptToPromptAttn", "source"): "text",
    ("StepwisePromptToPromptAttn", "target"): "text",
    ("StepwisePromptToPromptAttn", "word_cross_replace"): "word_values",
    ("StepwisePromptToPromptAttn", "reweight"): "word_values",
    ("StepwisePromptToPromptAttn", "blend_words"): "words",
    ("StepwisePromptToPromptMaps", "words"): "words",
    ("StepwiseKeypointCondition", "pose_json"): "json",
}
MALFORMED = {
    "text": [MALFORMED_JSON],
    "json": [MALFORMED_JSON, "[]", "null", '{"nose": "abc"}', '{"nose": [1e999, 5]}', '{"nose": [NaN, 5]}',
             '{"people": [{"pose_keypoints_2d": [1, 2]}]}', '{"keypoints": [1, 2, 3]}'],
    "word_values": [MALFORMED_JSON, "cat:abc", "cat:", ":0.5", "cat:nan", "cat:1e999", "cat:0.5:0.2"],
    "words": [MALFORMED_JSON, "no-such-word"],
}


# --- HTTP: the harness's client raises on a 400; here every answer is data ---

def _post(server, path: str, data: dict) -> tuple[int, dict]:
    req = urllib.request.Request(server.url + path, data=json.dumps(data).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _submit(server, prompt: dict) -> tuple[str | None, dict]:
    """(prompt id, None) when queued, (None, the 400 body) when the host's validation refused it."""
    status, body = _post(server, "/prompt", {"prompt": prompt, "client_id": server.client_id})
    if status == 400:
        return None, body
    assert status == 200, f"/prompt answered {status}: {body}"
    return body["prompt_id"], body


def _wait_all(server, ids: list[str], timeout: float) -> dict[str, dict]:
    """History entries of ``ids`` once the queue has run them all (success, error or interrupted)."""
    deadline = time.monotonic() + timeout
    while server.get_json("/prompt")["exec_info"]["queue_remaining"]:  # small, unlike /queue and /history
        if not server.alive():
            raise AssertionError(f"ComfyUI died while fuzzing:\n{server.log()[-4000:]}")
        if time.monotonic() > deadline:
            _post(server, "/queue", {"clear": True})
            server.interrupt()
            raise AssertionError(f"the fuzz prompts did not finish within {timeout:.0f}s")
        time.sleep(0.25)
    done = {}
    for pid in ids:
        for _ in range(100):  # the history entry is written just after the queue empties
            entry = server.get_json(f"/history/{pid}").get(pid)
            if entry and entry.get("status", {}).get("completed") is not None:
                done[pid] = entry
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"prompt {pid} left the queue without a history entry")
    return done


def _message(entry: dict, kind: str) -> dict | None:
    return next((m[1] for m in entry["status"].get("messages", []) if m[0] == kind), None)


def _cached(entry: dict) -> set[str]:
    msg = _message(entry, "execution_cached")
    return set(msg.get("nodes", [])) if msg else set()


# --- workflows ---

def _load(name: str) -> dict:
    """A graph by name: ``graphs/<stem>`` a tiny-zoo mechanics graph; a plain stem the mechanics graph where there
    is one, else the example workflow."""
    mechanics = os.path.join(GRAPHS, name.removeprefix("graphs/") + ".api.json")
    path = mechanics if os.path.isfile(mechanics) else os.path.join(paths.WORKFLOWS_API, name + ".api.json")
    return copy.deepcopy(workflow.load(path))


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _reduce(prompt: dict) -> dict:
    """A cheaper copy: 32 px latents, 1-2 steps, 2 seeds, small previews; nothing else changes."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] in ("EmptyLatentImage", "EmptyChromaRadianceLatentImage"):
            inputs.update(width=32, height=32)
        if isinstance(inputs.get("steps"), int):
            inputs["steps"] = 1 if node["class_type"] == "KSampler" else 2
        if node["class_type"] == "StepwiseArtifactEarlyReject":
            inputs.update(seeds=2, keep=1)
        if node["class_type"] == "StepwiseKeypointCondition":
            inputs["preview_size"] = 64
        if node["class_type"] == "StepwisePromptToPromptMaps":
            inputs["height"] = 32
    return prompt


def _prune(prompt: dict, nid: str, info: dict) -> dict:
    """Only the output nodes that depend on ``nid`` and what they need."""
    children: dict[str, set] = {k: set() for k in prompt}
    for k, node in prompt.items():
        for v in node["inputs"].values():
            if _is_link(v):
                children[v[0]].add(k)
    below, todo = set(), [nid]
    while todo:
        for c in children[todo.pop()] - below:
            below.add(c)
            todo.append(c)
    outputs = [k for k in below | {nid} if info[prompt[k]["class_type"]].get("output_node")]
    keep, todo = set(), list(outputs)
    while todo:
        k = todo.pop()
        if k in keep:
            continue
        keep.add(k)
        todo += [v[0] for v in prompt[k]["inputs"].values() if _is_link(v)]
    return {k: v for k, v in prompt.items() if k in keep}


def _with_estimator_loader(prompt: dict) -> dict:
    """artifact_early_reject with Load Artifact Estimator feeding the Artifact Estimator in mode trained."""
    prompt["20"] = {"class_type": "StepwiseLoadArtifactEstimator",
                    "inputs": {"estimator_name": "stepwise-fuzz-no-estimator.safetensors"}}
    prompt["6"]["inputs"].update(estimator=["20", 0], mode="trained")
    return prompt


# Stepwise nodes no example workflow holds: (workflow, how to add the node). A node found in neither is reported.
# (The estimator name need not exist: only the mutated values are judged.)
EXTRA = {"StepwiseLoadArtifactEstimator": ("artifact_early_reject", _with_estimator_loader)}


@dataclass
class Base:
    cls: str
    nid: str
    name: str  # workflow
    prompt: dict  # reduced, and pruned to the outputs that depend on the node


def _bases(info: dict) -> tuple[list[Base], list[str]]:
    workflows = {f[:-len(".api.json")]: workflow.load(os.path.join(paths.WORKFLOWS_API, f))
                 for f in sorted(os.listdir(paths.WORKFLOWS_API)) if f.endswith(".api.json")}
    workflows.update({"graphs/" + f[:-len(".api.json")]: _load("graphs/" + f[:-len(".api.json")])
                      for f in sorted(os.listdir(GRAPHS)) if f.endswith(".api.json")})
    bases, problems = [], []
    for cls in sorted(c for c in info if c.startswith(PREFIX)):
        holding = sorted((len(p), name) for name, p in workflows.items()
                         if any(n["class_type"] == cls for n in p.values()))
        if holding:
            name = PREFERRED.get(cls) if PREFERRED.get(cls) in {n for _, n in holding} else holding[0][1]
            prompt = workflows[name]
        elif cls in EXTRA:
            name, build = EXTRA[cls]
            prompt = build(copy.deepcopy(workflows[name]))
        else:
            problems.append(f"{cls}: no example workflow holds it and EXTRA has no recipe; add one")
            continue
        nid = min((k for k, n in prompt.items() if n["class_type"] == cls), key=int)
        bases.append(Base(cls, nid, name, _prune(_reduce(prompt), nid, info)))
    return sorted(bases, key=lambda b: (b.name, b.cls)), problems  # a workflow's cases together: the cache helps


# --- cases ---

@dataclass
class Case:
    base: Base
    input: str
    label: str
    prompt: dict
    may_succeed: bool  # a legitimately usable value; otherwise the case must be an error
    shown: str | None = None  # text of the bad value an error may name instead of the input


def _input_specs(info: dict) -> list[tuple[str, object, dict, bool]]:
    out = []
    for group in ("required", "optional"):
        for name, spec in info["input"].get(group, {}).items():
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            out.append((name, "COMBO" if isinstance(kind, list) else kind, options, group == "required"))
    return out


def _wrong_link(prompt: dict, nid: str, kind: str, info: dict) -> list | None:
    """A link to an output in ``prompt`` whose type the input does not take."""
    wanted = {t.strip() for t in str(kind).split(",")}
    for k in sorted(prompt, key=int):
        if k == nid:
            continue
        for slot, otype in enumerate(info[prompt[k]["class_type"]]["output"]):
            if isinstance(otype, str) and otype != "*" and "*" not in wanted and not {otype} & wanted:
                return [k, slot]
    return None


def _values(cls: str, name: str, kind, options: dict) -> list[tuple[str, object, bool, str | None]]:
    """(label, value, may succeed, shown) for one widget input."""
    out = [("a list that is not a link", [1, 2, 3], False, None)]
    if kind in ("INT", "FLOAT"):
        lo, hi = options.get("min"), options.get("max")
        out.append(("a string", "abc", False, "abc"))
        if lo is not None:
            out.append(("below min", lo - 1, False, str(lo - 1)))
        if hi is not None:
            out.append(("above max", hi + 1, False, str(hi + 1)))
        out.append(("huge", 2 ** 64 * 8 if kind == "INT" else 1e308, False, None))
        out.append(("NaN", float("nan"), False, None))  # passes the host's min/max checks
        if kind == "FLOAT":
            out += [("-huge", -1e308, False, None), ("Infinity", float("inf"), False, "inf")]
        if kind == "INT" and hi is not None and hi >= 2 ** 31 - 1:
            out.append(("huge but within range", hi, True, None))
    elif kind == "STRING":
        what = STRING_KINDS[(cls, name)]
        free = what == "text"
        out += [("empty", "", True, None), ("huge", HUGE_TEXT, free, None)]
        out += [(f"malformed {v[:24]!r}", v, free, None) for v in MALFORMED[what]]
    elif kind == "COMBO":
        out += [("not in the list", "stepwise-no-such-option", False, "stepwise-no-such-option"),
                ("empty", "", False, None), ("a number", 7, False, None)]
    elif kind == "BOOLEAN":
        out.append(("a string (the host makes it True)", "abc", True, None))
    return out


def _cases(bases: list[Base], info: dict) -> tuple[list[Case], list[str]]:
    cases, problems = [], []
    for base in bases:
        for name, kind, options, required in _input_specs(info[base.cls]):
            if kind == "STRING" and (base.cls, name) not in STRING_KINDS:
                problems.append(f"{base.cls}.{name}: a STRING input STRING_KINDS does not classify; add it")
                continue
            node = base.prompt[base.nid]["inputs"]

            def case(label, value, may_succeed=False, shown=None, drop=False):
                prompt = copy.deepcopy(base.prompt)
                if drop:
                    del prompt[base.nid]["inputs"][name]
                else:
                    prompt[base.nid]["inputs"][name] = value
                cases.append(Case(base, name, label, prompt, may_succeed, shown))

            if required:
                case("missing", None, drop=True)
            case("a link to a missing node", [MISSING_NODE, 0], shown=MISSING_NODE)
            wrong = _wrong_link(base.prompt, base.nid, kind, info)
            if wrong is None:
                problems.append(f"{base.cls}.{name}: no output of another type in {base.name} to link")
            else:
                case(f"a link to a {info[base.prompt[wrong[0]]['class_type']]['output'][wrong[1]]} output", wrong)
            if kind in ("INT", "FLOAT", "STRING", "COMBO", "BOOLEAN") and not _is_link(node.get(name)):
                for label, value, may_succeed, shown in _values(base.cls, name, kind, options):
                    case(label, value, may_succeed, shown)
    return cases, problems


# --- judging ---

def _names(text, case: Case) -> bool:
    text = str(text)
    if re.search(rf"(?<![A-Za-z0-9_]){re.escape(case.input)}(?![A-Za-z0-9_])", text):
        return True
    return bool(case.shown) and case.shown.lower() in text.lower()


def _value_text(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:40] + f"... ({len(text)} chars)"


def _judge(server, case: Case, pid: str | None, body: dict, entry: dict | None) -> str | None:
    """None when the case was answered well, else what went wrong."""
    where = f"{case.base.cls}.{case.input} = {_value_text(case.prompt[case.base.nid]['inputs'].get(case.input)) if case.label != 'missing' else '(missing)'} [{case.label}, {case.base.name}]"
    if pid is None:
        errors = body.get("node_errors", {}).get(case.base.nid, {}).get("errors", [])
        if any(e.get("extra_info", {}).get("input_name") == case.input or _names(e.get("details", ""), case)
               for e in errors):
            return None
        return f"{where}: refused by /prompt without naming the input: {json.dumps(body)[:600]}"
    status = entry["status"]
    if status.get("status_str") == "error":
        err = _message(entry, "execution_error")
        if err is None:
            return f"{where}: ended without an execution error: {status.get('messages')}"
        text = f"{err.get('node_type')} (node {err.get('node_id')}): {err.get('exception_type')}: {err.get('exception_message')}"
        if not str(err.get("exception_type", "")).endswith(("ValueError", "CheckpointError")):
            return f"{where}: crashed with an unclear error: {text[:600]}"
        if not _names(err.get("exception_message", ""), case):
            return f"{where}: the error does not name the input or the value: {text[:600]}"
        return None
    if not case.may_succeed:
        return f"{where}: an invalid value was accepted and the prompt succeeded"
    for nid, image in _images(server, entry).items():
        if not image.std() > 0:
            return f"{where}: succeeded with a constant image at output {nid} (NaN inside?)"
    return None


def _images(server, entry: dict) -> dict[str, np.ndarray]:
    return {nid: server.output_images(entry, nid)[0] for nid, out in entry.get("outputs", {}).items()
            if out.get("images")}


def _with_nonce(prompt: dict, value: str) -> dict:
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        if node["class_type"].startswith(PREFIX):
            node["inputs"][NONCE] = value
    return prompt


GOLDEN = ("prompt_to_prompt_attention_maps", "visual_anagram", "artifact_early_reject")


def _run_golden(server, nonce: str) -> dict[str, dict[str, np.ndarray]]:
    """Each golden workflow (reduced), its Stepwise nodes executed afresh (a new nonce) → its images."""
    out = {}
    for name in GOLDEN:
        prompt = _with_nonce(_reduce(_load(name)), nonce)
        entry = server.run(prompt, timeout=300)
        stepwise = {k for k, n in prompt.items() if n["class_type"].startswith(PREFIX)}
        assert not stepwise & _cached(entry), f"{name}: Stepwise nodes came from the cache"
        out[name] = _images(server, entry)
        assert out[name], f"{name} gave no images"
    return out


def test_every_stepwise_input_fuzzed_through_prompt(server):
    start = time.monotonic()
    info = server.object_info()
    bases, problems = _bases(info)
    cases, more = _cases(bases, info)
    problems += more
    before = _run_golden(server, "before")

    queued = []
    for case in cases:
        pid, body = _submit(server, case.prompt)
        queued.append((case, pid, body))
    entries = _wait_all(server, [pid for _, pid, _ in queued if pid], 900)
    for case, pid, body in queued:
        problem = _judge(server, case, pid, body, entries.get(pid))
        if problem:
            problems.append(problem)
    assert server.alive(), f"ComfyUI died while fuzzing:\n{server.log()[-4000:]}"

    after = _run_golden(server, "after")  # right after the fuzzing: loaders the last cases used stay cached
    for name, images in before.items():
        for nid, image in images.items():
            other = after[name].get(nid)
            if other is None or other.shape != image.shape or np.abs(other - image).max() > 1.5 / 255:
                problems.append(f"{name}: output {nid} differs after the fuzzing (state or patch left behind)")
    executed = sum(1 for _, pid, _ in queued if pid)
    log.info("fuzz: %d cases over %d nodes, %d executed, %.0fs", len(cases), len(bases), executed,
             time.monotonic() - start)
    assert not problems, f"{len(problems)} problems in {len(cases)} fuzz cases:\n" + "\n".join(problems)


# --- interrupting ---

def _interrupt_while_sampling(server, prompt: dict, node_id: str, at_step: int) -> tuple[str, int | None]:
    """Queue ``prompt`` and POST /interrupt once node ``node_id`` reports step ``at_step`` on the websocket;
    (prompt id, the step it was interrupted after, or None when it ended first)."""
    import aiohttp

    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{server.url}/ws?clientId={server.client_id}") as ws:
                pid = server.queue(prompt)
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    event = json.loads(msg.data)
                    data = event.get("data") or {}
                    if data.get("prompt_id") != pid:
                        continue
                    if event["type"] == "progress" and str(data.get("node")) == node_id and data["value"] >= at_step:
                        async with session.post(f"{server.url}/interrupt", json={"prompt_id": pid}):
                            return pid, data["value"]
                    if event["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                        return pid, None
                return pid, None

    return asyncio.run(asyncio.wait_for(go(), 300))


def test_interrupted_stepwise_workflow_runs_again_to_the_uninterrupted_result(server):
    """Prompt-to-Prompt keeps per-run state on its patched model; interrupting the sampler mid-run must leave
    nothing behind: the same prompt, run again on the cached patched model, gives the uninterrupted image."""
    prompt = _reduce(_load("prompt_to_prompt_replace"))
    prompt["5"]["inputs"]["steps"] = 8
    uninterrupted = server.output_images(server.run(_with_nonce(prompt, "uninterrupted"), timeout=300))[0]

    again = _with_nonce(prompt, "interrupted")
    pid, step = _interrupt_while_sampling(server, again, "5", 2)
    assert step is not None, "the sampler finished before it could be interrupted"
    entry = _wait_all(server, [pid], 120)[pid]
    assert entry["status"]["status_str"] == "error" and not entry["status"]["completed"]
    interrupted = _message(entry, "execution_interrupted")
    assert interrupted is not None, entry["status"]["messages"]
    assert interrupted["node_id"] == "5", f"interrupted in node {interrupted['node_id']}, not in the sampler"
    assert server.alive()

    rerun = server.run(again, timeout=300)
    assert "3" in _cached(rerun), "the Prompt-to-Prompt node ran again; its interrupted patched model was not reused"
    image = server.output_images(rerun)[0]
    assert image.shape == uninterrupted.shape and np.abs(image - uninterrupted).max() <= 1.5 / 255
