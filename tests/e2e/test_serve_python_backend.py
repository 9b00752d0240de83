"""A real tritonserver (nvidia-pytriton, CPU) serving the python-backend repository of a fine-tuned model.

The model is a tiny Llama fine-tuned here for a few LoRA steps by the trainer's own ``prepare``,
``train`` and ``export`` commands; the merged weights are what gets served. Served answers are
compared with ``transformers`` generating locally from the same merged checkpoint, so the test
checks the chat template, the batching code and the tensor plumbing, not just that something came
back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.serve import client, repository, server

from tests.support.wait import wait_for

pytestmark = pytest.mark.e2e

PROMPTS = ["Where is my order?", "我要退款。", "Can I change my address?"]
DIALOGUES = [
    ("Where is my order?", "Your order has shipped and arrives in 3 days.", "order_status"),
    ("I want a refund.", "Sure, I have started your refund. It takes 5 days.", "refund"),
    ("我的订单到哪里了？", "您的订单已发货，预计三天内送达。", "order_status"),
    ("我要退款。", "好的，已为您申请退款，五个工作日内到账。", "refund"),
]
MAX_INPUT_LEN = 64
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")
MAX_OUTPUT_LEN = 12


def _spec(**engine: Any) -> v1alpha1.ServingSpec:
    settings = {"maxBatchSize": 4, "maxInputLen": MAX_INPUT_LEN, "maxOutputLen": MAX_OUTPUT_LEN, **engine}
    return v1alpha1.ServingSpec.model_validate({"backend": "python", "engine": settings})


def _trainer_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kubetune_trainer ARGS`` and capture its output."""
    command = [sys.executable, "-m", "kubetune_trainer", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _get(url: str) -> str:
    """GET a URL, as text."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode("utf-8"))


def _group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama fine-tuned with LoRA until it memorises the dialogues, exported (merged) by the trainer."""
    from kubetune_trainer import cli
    from kubetune_trainer.config import save_config
    from kubetune_trainer.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("finetuned")
    records = [{"context": c, "response": r, "intent": i} for c, r, i in DIALOGUES] * 6
    dataset = root / "dialogues.jsonl"
    dataset.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    base = build_tiny_model(root / "base", [text for c, r, _ in DIALOGUES for text in (c, r)], vocab_size=512)
    config = v1alpha1.TrainerConfig.model_validate(
        {
            "spec": {
                "baseModel": {"uri": "pvc://models/tiny"},
                "dataset": {
                    "uri": "pvc://data/dialogues.jsonl",
                    "format": "triple",
                    "validationSplit": 0.2,
                    "cleaning": {"qualityFilter": {"enabled": False}, "dedup": {"enabled": False}},
                },
                "output": {"uri": "pvc://artifacts/support-bot"},
                "method": "lora",
                "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "targetModules": [*LORA_TARGETS]},
                "training": {
                    "learningRate": 5e-3,
                    "warmupRatio": 0.0,
                    "maxSeqLength": 128,
                    "precision": "fp32",
                    "gradientCheckpointing": False,
                    "perDeviceBatchSize": 4,
                    "gradientAccumulationSteps": 1,
                    "maxSteps": 80,
                },
                "evaluation": {"enabled": False},
            },
            "paths": {"dataset": str(dataset), "baseModel": str(base), "workDir": str(root / "work")},
        }
    )
    path = save_config(config, root / "config.json")
    for step in (["prepare"], ["train"], ["export", "--dtype", "fp32"]):
        assert cli.main([step[0], "--config", str(path), *step[1:]]) == 0, step
    merged = Path(config.paths.model_dir) / "merged"
    assert (merged / "config.json").is_file()
    return merged


@pytest.fixture(scope="module")
def served(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.TritonServer]:
    root = tmp_path_factory.mktemp("serve")
    repo = repository.build_repository(model_dir, root / "repo", _spec())
    with server.start_server(repo, log_path=root / "tritonserver.log") as running:
        yield running
    assert running.process is None


@pytest.fixture(scope="module")
def local_answers(model_dir: Path) -> dict[tuple[str, int], str]:
    """Greedy answers of the same checkpoint generated in this process, one prompt at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    answers = {}
    for prompt in PROMPTS:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        for max_tokens in (3, MAX_OUTPUT_LEN):
            with torch.inference_mode():
                out = model.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens, do_sample=False
                )
            answers[(prompt, max_tokens)] = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    return answers


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generate_endpoint_answers_like_local_generation(
    served: server.TritonServer, local_answers: dict[tuple[str, int], str], prompt: str
) -> None:
    answer = client.generate(served.http_url, "llm", prompt, MAX_OUTPUT_LEN)
    assert answer.strip()
    assert answer == local_answers[(prompt, MAX_OUTPUT_LEN)]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritonclient_infer_answers_like_local_generation(
    served: server.TritonServer, local_answers: dict[tuple[str, int], str], protocol: client.Protocol
) -> None:
    url = served.http_url if protocol == "http" else f"grpc://{served.grpc_url}"
    answer = client.infer(url, "llm", PROMPTS[0], MAX_OUTPUT_LEN)
    assert answer.strip()
    assert answer == local_answers[(PROMPTS[0], MAX_OUTPUT_LEN)]


def test_the_fine_tuned_weights_are_served(served: server.TritonServer) -> None:
    answer = client.generate(served.http_url, "llm", "Where is my order?", MAX_OUTPUT_LEN)
    # 80 LoRA steps on 24 records memorise this dialogue; if the trainer's defaults change, raise maxSteps.
    assert answer.startswith("Your order has shipped"), answer


def test_max_tokens_bounds_the_answer(served: server.TritonServer, local_answers: dict[tuple[str, int], str]) -> None:
    short = client.generate(served.http_url, "llm", PROMPTS[0], 3)
    assert short == local_answers[(PROMPTS[0], 3)]
    assert local_answers[(PROMPTS[0], MAX_OUTPUT_LEN)].startswith(short)


def test_a_request_with_several_prompts_gets_one_answer_each(served: server.TritonServer) -> None:
    import tritonclient.http as httpclient

    triton = httpclient.InferenceServerClient(served.http_url.removeprefix("http://"))
    text = httpclient.InferInput("text_input", [2, 1], "BYTES")
    text.set_data_from_numpy(np.array([[PROMPTS[0].encode()], [PROMPTS[1].encode()]], dtype=np.object_))
    tokens = httpclient.InferInput("max_tokens", [2, 1], "INT32")
    tokens.set_data_from_numpy(np.array([[3], [MAX_OUTPUT_LEN]], dtype=np.int32))
    result = triton.infer("llm", [text, tokens]).as_numpy("text_output")
    triton.close()
    assert result.shape == (2, 1)
    assert all(item.decode().strip() for item in result.reshape(-1))


def test_concurrent_requests_are_all_answered(served: server.TritonServer) -> None:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda p: client.generate(served.http_url, "llm", p, 4), prompts))
    assert len(answers) == 8 and all(a.strip() for a in answers)
    stats = json.loads(_get(f"{served.http_url}/v2/models/llm/stats"))
    model_stats = stats["model_stats"][0]
    # Triton counts inferences (prompts) and executions (model calls); batching makes the latter fewer.
    assert int(model_stats["inference_count"]) >= 8
    assert int(model_stats["execution_count"]) <= int(model_stats["inference_count"])


def test_sampling_with_a_temperature_is_accepted(served: server.TritonServer) -> None:
    import tritonclient.grpc as grpcclient

    triton = grpcclient.InferenceServerClient(served.grpc_url)
    text = grpcclient.InferInput("text_input", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[PROMPTS[0].encode()]], dtype=np.object_))
    temperature = grpcclient.InferInput("temperature", [1, 1], "FP32")
    temperature.set_data_from_numpy(np.array([[0.7]], dtype=np.float32))
    result = triton.infer("llm", [text, temperature]).as_numpy("text_output")
    triton.close()
    assert result.shape == (1, 1) and isinstance(result[0, 0], bytes)


@pytest.mark.parametrize(
    ("prompt", "max_tokens", "message"),
    [
        (PROMPTS[0], 0, f"max_tokens must be between 1 and {MAX_OUTPUT_LEN}, got 0"),
        (PROMPTS[0], MAX_OUTPUT_LEN + 1, f"max_tokens must be between 1 and {MAX_OUTPUT_LEN}"),
        ("   ", 4, "text_input is empty"),
        ("order " * 200, 4, f"the limit (maxInputLen) is {MAX_INPUT_LEN}"),
    ],
)
def test_bad_requests_get_a_clear_error_and_the_server_goes_on(
    served: server.TritonServer, prompt: str, max_tokens: int, message: str
) -> None:
    with pytest.raises(client.InferenceError) as failure:
        client.generate(served.http_url, "llm", prompt, max_tokens)
    assert message in str(failure.value)
    assert client.generate(served.http_url, "llm", PROMPTS[0], 2).strip()


def test_unknown_model_is_reported(served: server.TritonServer) -> None:
    with pytest.raises(client.InferenceError, match=r"HTTP 400|HTTP 404"):
        client.generate(served.http_url, "nope", PROMPTS[0], 2)


def test_metrics_count_the_requests(served: server.TritonServer) -> None:
    client.generate(served.http_url, "llm", PROMPTS[0], 2)
    metrics = _get(served.metrics_url)
    assert 'nv_inference_request_success{model="llm",version="1"}' in metrics


def test_smoke_command_passes_on_a_served_model(served: server.TritonServer) -> None:
    run = _trainer_cli(
        "serve", "smoke", "--url", f"grpc://{served.grpc_url}", "--model", "llm", "--prompt", PROMPTS[1],
        "--max-tokens", "6", "--timeout", "60",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["model"] == "llm" and answer["answer"].strip()


def test_smoke_command_fails_on_a_model_that_is_not_there(served: server.TritonServer) -> None:
    run = _trainer_cli("serve", "smoke", "--url", served.http_url, "--model", "missing", "--timeout", "2")
    assert run.returncode == 1
    assert "smoke test failed: model 'missing'" in run.stderr


def test_dynamic_batching_off_serves_too(model_dir: Path, tmp_path: Path) -> None:
    repo = repository.build_repository(
        model_dir, tmp_path / "repo", _spec(dynamicBatching=False, maxBatchSize=1), weights="reference"
    )
    with server.start_server(repo, log_path=tmp_path / "log") as running:
        assert client.generate(running.http_url, "llm", PROMPTS[0], 4).strip()
        config = json.loads(_get(f"{running.http_url}/v2/models/llm/config"))
        assert "dynamic_batching" not in config and config["max_batch_size"] == 1
        pgid = running.process.pid if running.process else 0
    assert wait_for(lambda: _group_is_gone(pgid), timeout=10, description="server process group gone")


def test_a_model_that_fails_to_load_stops_the_server_with_its_log(model_dir: Path, tmp_path: Path) -> None:
    repo = repository.build_repository(model_dir, tmp_path / "repo", _spec())
    config = repo / "llm" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "model"', 'string_value: "no-such-dir"'))
    broken = server.TritonServer(repo, log_path=tmp_path / "log")
    with pytest.raises(server.ServerError, match="exited with code 1 before it was ready") as failure:
        broken.start(timeout=120)
    assert "no-such-dir has no config.json" in str(failure.value)  # the error lines name the cause
    assert broken.process is None


def test_serve_command_runs_until_terminated(served: server.TritonServer, tmp_path: Path) -> None:
    http, grpc, metrics = server.free_ports(3)
    command = [sys.executable, "-m", "kubetune_trainer", "serve", "--repository", str(served.repository)]
    command += ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    command += ["--log-file", str(tmp_path / "log")]
    stderr = (tmp_path / "stderr").open("w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
        reader.start()
        endpoints = wait_for(
            lambda: next((json.loads(line) for line in lines if line.startswith("{")), None),
            timeout=180,
            description="the serve command to print its endpoints",
        )
        assert endpoints["http"] == f"http://127.0.0.1:{http}"
        assert client.generate(endpoints["http"], "llm", PROMPTS[0], 3).strip()
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=True)
        triton_pid = int(children.stdout.split()[0])
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        assert wait_for(lambda: _group_is_gone(triton_pid), timeout=10, description="tritonserver group gone")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        stderr.close()


def test_the_server_follows_a_parent_killed_outright(served: server.TritonServer, tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from kubetune_trainer.serve import server\n"
        f"running = server.start_server({str(served.repository)!r}, log_path={str(tmp_path / 'log')!r})\n"
        "print(running.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        triton_pid = int((parent.stdout.readline() if parent.stdout else "").strip() or 0)
        assert triton_pid, "the parent did not start a server"
        parent.kill()  # SIGKILL: no atexit, no finally
        parent.wait(10)
        assert wait_for(lambda: _group_is_gone(triton_pid), timeout=60, description="orphaned tritonserver gone")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout:
            parent.stdout.close()
