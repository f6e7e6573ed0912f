"""Stepwise's trainer and synthetic-data maker. Run it with the Python of ComfyUI's environment:

    python train.py make-data --kind shapes|figures|scenes --n N --size S --out DIR [--seed S]
                              [--objects 1 3] [--figures 0.0] [--split all|train|held_out]   (the last three: scenes)
    python train.py refiner --data DIR --out FILE [--base CHECKPOINT [--lora-rank R] | --arch tiny|compact|small
                            --space pixel|latent [--vae FILE]] --t-range 0 500 [shared options]
    python train.py estimator --data DIR --base CHECKPOINT [--vae FILE] [--arch tiny|compact|small]
                              [--clean-share 0.1] [--rank-weight 1] [shared options]
    python train.py world --data DIR --out FILE [--base CHECKPOINT] [--text train|frozen] [--sample-prompt P ...]
                          [--recipe TEXT] [--attention pytorch|host] [shared options]
    python train.py pose --data DIR|COCO.json --out FILE [--base CHECKPOINT [--lora-rank R] | --arch compact|small
                         --space pixel|latent [--vae FILE]] --tokens fourier|grid [--max-people P]
                         [--cond-dropout 0.1] [--flip 0.5] [--min-scale 0.8] [shared options]

Shared options: --steps N --batch B --lr LR --ema D --precision fp32|bf16|fp16 --resolution R --seed S
[--resume] [--sample-every K] [--save-every K] [--device auto|cpu|cuda]. ``train.py <command> --help`` lists all.

Several processes, GPUs or nodes: start the same command with ``torchrun`` (``torchrun --nproc-per-node 8 train.py
refiner ...``); ``--batch`` is the global batch, split evenly across the processes (trainers/distributed.py).

This file is the command line of the package ``trainers/`` (``stepwise.trainers``: the options, the shared loop and
the four trainers); synthetic data comes from ``models/world.py`` (shapes, figures) and ``models/scenes.py``
(captioned scenes).

The host (ComfyUI) is found at ``COMFYUI_PATH`` (default ``~/.cache/stepwise/ComfyUI``, where ``make host`` puts
it) or when this folder sits in a ComfyUI's ``custom_nodes``. Checkpoints go to ``models/stepwise`` of your
ComfyUI to appear in the Load Stepwise Checkpoint node.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _host_path() -> str:
    env = os.environ.get("COMFYUI_PATH")
    candidates = [env] if env else []
    candidates += [os.path.dirname(os.path.dirname(HERE)), os.path.expanduser("~/.cache/stepwise/ComfyUI")]
    for path in candidates:
        if path and os.path.isfile(os.path.join(path, "comfy", "sd.py")):
            return path
    sys.exit("train.py: ComfyUI not found; set COMFYUI_PATH to your ComfyUI folder (or run `make host`)")


def import_pack():
    """Import this folder as the package ``stepwise`` (its modules use relative imports), host or not.

    Without the host on ``sys.path`` the package's entry defines no nodes; ``stepwise.kernels`` and the pure parts
    of ``stepwise.models`` work as they are.
    """
    if "stepwise" not in sys.modules:
        spec = importlib.util.spec_from_file_location("stepwise", os.path.join(HERE, "__init__.py"),
                                                      submodule_search_locations=[HERE])
        module = importlib.util.module_from_spec(spec)
        sys.modules["stepwise"] = module
        spec.loader.exec_module(module)
    return sys.modules["stepwise"]


def import_host_and_pack(host_args: tuple[str, ...] = ()):
    """Import the host (its options parsed by itself, as under main.py: --cpu without CUDA, plus ``host_args``),
    then the pack. ``host_args`` count only when this call is the one that parses the host's options."""
    host = _host_path()
    if host not in sys.path:
        sys.path.insert(0, host)
    import comfy.options
    import torch

    if "comfy.cli_args" not in sys.modules:
        argv, sys.argv = sys.argv, [sys.argv[0]] + ([] if torch.cuda.is_available() else ["--cpu"]) + list(host_args)
        try:
            comfy.options.enable_args_parsing()
            import comfy.cli_args  # noqa: F401
        finally:
            sys.argv = argv
    return import_pack()


def _shared(p: argparse.ArgumentParser, arch: str, t_range: tuple[int, int], parameterisation: str = "eps") -> None:
    """Options every trainer takes: output, network from scratch, schedule, optimiser, precision, EMA, resume."""
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--arch", choices=["tiny", "compact", "small"] + (["world"] if arch == "world" else []), default=arch,
                   help=f"from scratch: network size (default {arch}; tiny has no attention)")
    p.add_argument("--space", choices=["pixel", "latent"], default="pixel")
    p.add_argument("--vae", help="with --space latent: checkpoint or VAE file whose VAE makes the latents")
    p.add_argument("--latent-format", choices=["SD15", "SDXL"], default="SD15")
    p.add_argument("--parameterisation", choices=["eps", "v", "flow"], default=parameterisation,
                   help=f"from scratch: what the network predicts (default {parameterisation})")
    p.add_argument("--t-range", type=int, nargs=2, default=list(t_range), metavar=("LO", "HI"),
                   help="timesteps [LO, HI) of the 1000-level schedule to train on (HI exclusive)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights; 0 saves raw weights")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue bit-exactly from the last checkpoint of --out")
    p.add_argument("--sample-every", type=int, default=0, help="write a sample grid every K steps (0: never)")
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every K steps (0: at the end)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute the UNet's blocks in the backward pass (less memory, about a third more time)")
    p.add_argument("--ema-device", choices=["same", "cpu"], default="same",
                   help="keep the EMA copy of the weights on the training device (default) or in CPU memory")
    p.add_argument("--stream", action="store_true",
                   help="decode each batch's images on the fly instead of reading --data into memory (tar shards "
                        "always stream)")
    p.add_argument("--order", choices=["auto", "random", "epochs"], default="auto",
                   help="images drawn with replacement (random) or in per-epoch permutations of the seed (epochs); "
                        "auto: epochs when streaming")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes decoding a stream")
    p.add_argument("--cache", help="a folder keeping a stream's VAE latents across epochs and runs (refiner, world)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop after this many minutes with the checkpoint written; --resume continues (0: no limit)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("make-data", help="write a synthetic data set (shapes, stick figures or captioned scenes)")
    data.add_argument("--kind", choices=["shapes", "figures", "scenes"], required=True,
                      help="scenes: the captioned world of models/scenes.py (PNG, .txt caption, .json scene, "
                           "_masks.png labels)")
    data.add_argument("--n", type=int, required=True)
    data.add_argument("--size", type=int, default=64)
    data.add_argument("--out", required=True)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--objects", type=int, nargs=2, default=[1, 3], metavar=("LO", "HI"),
                      help="scenes: least and most objects per scene (1 to 3)")
    data.add_argument("--figures", type=float, default=0.0, help="scenes: share of scenes with a stick figure")
    data.add_argument("--split", choices=["all", "train", "held_out"], default="all",
                      help="scenes: all scenes, or only those without (train) / with (held_out) a held-out "
                           "(colour, shape) pair (models.scenes.HELD_OUT)")

    ref = sub.add_parser("refiner", help="train a refiner on a timestep range")
    ref.add_argument("--data", required=True, help="folder of images (.txt captions beside them are read)")
    ref.add_argument("--base", help="fine-tune the UNet of this host-loadable checkpoint (SD1.x/SD2.x/SDXL); its VAE "
                                    "makes the latents and its text encoder reads the .txt captions")
    ref.add_argument("--lora-rank", type=int, default=0, help="with --base: train LoRA layers of this rank and write "
                                                              "a LoRA the host's LoRA loaders read")
    ref.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default: the rank)")
    ref.add_argument("--cond-dropout", type=float, default=0.1, help="with --base: share of empty captions (for CFG)")
    _shared(ref, arch="tiny", t_range=(0, 500))

    pose = sub.add_parser("pose", help="train a pose-conditioned model (UNet + keypoint encoder)")
    pose.add_argument("--data", required=True,
                      help="folder of images with <stem>.json keypoints (any format KeypointCondition reads), or a "
                           "COCO person-keypoints annotation file with its images beside it")
    pose.add_argument("--base", help="fine-tune this host checkpoint (SD1.x/SD2.x/SDXL): the context becomes its text "
                                     "tokens (from .txt captions) followed by the pose tokens")
    pose.add_argument("--lora-rank", type=int, default=0,
                      help="with --base: train LoRA layers of this rank in the UNet (the keypoint encoder fully) and "
                           "write the full pose checkpoint with them merged (less memory than a full fine-tune)")
    pose.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default: the rank)")
    pose.add_argument("--tokens", choices=["fourier", "grid"], default="fourier",
                      help="fourier: one token per joint (default); grid: the seed's 17-cell grid token")
    pose.add_argument("--bands", type=int, default=8, help="fourier: frequency bands per coordinate")
    pose.add_argument("--grid", type=int, default=32, help="grid: cells per side")
    pose.add_argument("--canvas", type=int, default=512, help="grid: canvas size in pixels the grid covers")
    pose.add_argument("--max-people", type=int, default=1, help="people per image the model reads")
    pose.add_argument("--context-dim", type=int, default=64, help="from scratch: width of the pose tokens")
    pose.add_argument("--cond-dropout", type=float, default=0.1,
                      help="share of null poses (and, with --base, of empty captions) for CFG")
    pose.add_argument("--flip", type=float, default=0.5, help="probability of a horizontal flip (joints swap sides)")
    pose.add_argument("--min-scale", type=float, default=0.8, help="smallest random crop side (share of the image)")
    pose.add_argument("--sample-cfg", type=float, default=3.0, help="CFG scale of the sample grids")
    _shared(pose, arch="compact", t_range=(0, 1000), parameterisation="flow")  # see README: PCK 0.34 vs 0.04 eps

    est = sub.add_parser("estimator", help="train the artifact estimator on a diffusion model's x0 estimates")
    est.add_argument("--data", required=True, help="folder of clean images; artifacts are added synthetically")
    est.add_argument("--base", required=True,
                     help="the diffusion model whose x0 estimates it reads: a host checkpoint (its VAE makes the "
                          "latents) or a Stepwise refiner/pose checkpoint (pixel space, or --vae)")
    est.add_argument("--clean-share", type=float, default=0.1, help="share of finished images (sigma 0) per batch")
    est.add_argument("--rank-weight", type=float, default=1.0, help="weight of the clean-vs-corrupted ranking loss")
    est.add_argument("--eval-steps", type=int, default=20, help="schedule length of the held-out probe evaluation")
    _shared(est, arch="small", t_range=(0, 1000))

    world = sub.add_parser("world", help="train the world text-to-image model (or fine-tune a checkpoint on the world)")
    world.add_argument("--data", required=True, help="folder of images with .txt captions (train.py make-data --kind "
                                                     "scenes)")
    world.add_argument("--base", help="fine-tune this host-loadable checkpoint's UNet over the whole schedule (its VAE "
                                      "makes the latents, its text encoder reads the captions)")
    world.add_argument("--text", choices=["train", "frozen"], default="train",
                       help="train the text encoder with the UNet (default) or keep it as it is")
    world.add_argument("--cond-dropout", type=float, default=0.1, help="share of empty captions (for CFG)")
    world.add_argument("--sample-cfg", type=float, default=3.0, help="CFG scale of the sample grids")
    world.add_argument("--sample-steps", type=int, default=20, help="sampler steps of the sample grids")
    world.add_argument("--sample-prompt", action="append", default=[], dest="sample_prompts",
                       help="a prompt of the sample grids (repeat; default: 8 held-out scenes)")
    world.add_argument("--recipe", default="", help="how this run was made, recorded in the metadata")
    world.add_argument("--attention", choices=["pytorch", "host"], default="pytorch",
                       help="attention implementation while training: PyTorch's scaled-dot-product attention "
                            "(the host's --use-pytorch-cross-attention; default, ~1.8x faster on CPUs) or the "
                            "host's default for this device")
    _shared(world, arch="world", t_range=(0, 1000), parameterisation="flow")
    world.set_defaults(resolution=32, batch=32, lr=3e-4)

    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))  # under torchrun, rank 0 alone logs progress
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(name)s: %(message)s" if rank == 0 else f"rank {rank}: %(name)s: %(message)s")
    pytorch_attention = args.command == "world" and args.attention == "pytorch"
    import_host_and_pack(("--use-pytorch-cross-attention",) if pytorch_attention else ())
    try:
        if args.command == "make-data":
            if args.kind == "scenes":
                from stepwise.models.scenes import write_dataset

                n = write_dataset(args.out, args.n, args.size, args.seed, tuple(args.objects), args.figures, args.split)
            else:
                from stepwise.models.world import make_data

                n = make_data(args.kind, args.n, args.size, args.out, args.seed)
            logging.getLogger("stepwise.train").info("wrote %d %s images to %s", n, args.kind, args.out)
            return 0
        shared = dict(data=args.data, out=args.out, arch=args.arch, space=args.space, vae=args.vae,
                      latent_format=args.latent_format, parameterisation=args.parameterisation,
                      t_range=tuple(args.t_range), steps=args.steps, batch=args.batch, lr=args.lr, ema=args.ema,
                      precision=args.precision, resolution=args.resolution, seed=args.seed, resume=args.resume,
                      sample_every=args.sample_every, save_every=args.save_every, device=args.device,
                      base=args.base, cond_dropout=getattr(args, "cond_dropout", 0.1), max_minutes=args.max_minutes,
                      grad_checkpointing=args.grad_checkpointing, ema_device=args.ema_device, stream=args.stream,
                      order=args.order, workers=args.workers, cache=args.cache)
        if args.command == "estimator":
            from stepwise.trainers import EstimatorOptions, train_estimator

            meta = train_estimator(EstimatorOptions(**shared, clean_share=args.clean_share,
                                                    rank_weight=args.rank_weight, eval_steps=args.eval_steps))
        elif args.command == "world":
            from stepwise.trainers import WorldOptions, train_world

            meta = train_world(WorldOptions(**shared, text=args.text, sample_cfg=args.sample_cfg,
                                            sample_steps=args.sample_steps, sample_prompts=tuple(args.sample_prompts),
                                            recipe=args.recipe))
        elif args.command == "pose":
            from stepwise.trainers import PoseOptions, train_pose

            meta = train_pose(PoseOptions(**shared, tokens=args.tokens, bands=args.bands, grid=args.grid,
                                          canvas=args.canvas, max_people=args.max_people, context_dim=args.context_dim,
                                          flip=args.flip, min_scale=args.min_scale, sample_cfg=args.sample_cfg,
                                          lora_rank=args.lora_rank, lora_alpha=args.lora_alpha))
        else:
            from stepwise.trainers import RefinerOptions, train_refiner

            meta = train_refiner(RefinerOptions(**shared, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha))
        logging.getLogger("stepwise.train").info("wrote %s (final loss %s)", args.out, meta["training"]["final_loss"])
        return 0
    except ValueError as e:
        parser.exit(2, f"train.py: error: {e}\n")
    finally:
        if args.command != "make-data":
            from stepwise.trainers import distributed

            distributed.stop()


if __name__ == "__main__":
    sys.exit(main())
