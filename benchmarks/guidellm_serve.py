"""guidellm (the vLLM project's load generator) against ``fmgate serve`` on a tiny local model.

It builds the tiny random-weight llama (``make_tiny_model``, offline) in a temporary folder, serves
it with ``python -m fmgate serve`` on a free loopback port, and runs ``guidellm run`` against it:
synthetic prompts of ``--prompt-tokens`` tokens (counted with the model's own tokenizer), a fixed
output of ``--output-tokens`` (guidellm sends vLLM's ``ignore_eos``, which fmgate serve honours
for local models, and ``stream_options.continuous_usage_stats``), one benchmark per profile for
``--seconds`` each. It prints what guidellm reports, and asserts nothing about time.

    pip install guidellm                        # not a dependency of fmgate
    python benchmarks/guidellm_serve.py --seconds 10
    python benchmarks/guidellm_serve.py --guidellm-path /tmp/gl   # guidellm installed with
                                                                  # pip install --target /tmp/gl

Before fmgate serve accepted vLLM's extensions, guidellm got a 400 on every request.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _servers import free_port, server


def _guidellm(args: argparse.Namespace, target: str, model_dir: Path, profile: str) -> list[str]:
    data = f"kind=synthetic_text,prompt_tokens={args.prompt_tokens},"
    data += f"output_tokens={args.output_tokens}"
    return [
        *(args.guidellm_python, "-m", "guidellm", "run"),
        *("--backend", f"kind=openai_http,target={target}"),
        *("--profile", profile),
        *("--data", data),
        *("--tokenizer", f"kind=huggingface_auto,model={model_dir}"),
        *("--constraint", f"kind=max_duration,seconds={args.seconds}"),
        *("--output", "kind=console"),
        "--disable-progress",
    ]


def _guidellm_env(args: argparse.Namespace) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if args.guidellm_path:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [args.guidellm_path, env.get("PYTHONPATH")])
        )
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per profile (5)")
    parser.add_argument("--prompt-tokens", type=int, default=32, help="per request (32)")
    parser.add_argument("--output-tokens", type=int, default=16, help="per request (16)")
    parser.add_argument(
        "--profiles",
        nargs="+",
        default=["kind=synchronous", "kind=concurrent,streams=8"],
        help="guidellm --profile values, one benchmark each",
    )
    parser.add_argument("--guidellm-python", default=sys.executable, help="the Python to run it")
    parser.add_argument("--guidellm-path", help="a folder to add to PYTHONPATH for guidellm")
    args = parser.parse_args()

    from fmgate.testing import make_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_model("llama", Path(tmp) / "llama")
        # One thread per server: on a small machine torch's threads would fight guidellm's.
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        log = Path(tmp) / "serve.log"
        port = free_port()
        command = [sys.executable, "-m", "fmgate", "serve", f"transformers:{model_dir}"]
        with server([*command, "--port", str(port)], port, env, log) as target:
            for profile in args.profiles:
                print(f"\n== guidellm --profile {profile} against fmgate serve ({target})\n")
                command = _guidellm(args, target, model_dir, profile)
                done = subprocess.run(command, env=_guidellm_env(args), check=False)
                if done.returncode:
                    raise SystemExit(f"guidellm exited {done.returncode}")


if __name__ == "__main__":
    main()
