"""Set a checkpoint's inference-time options (re-crop steps, flip TTA, re-crop TTA) without retraining.

    python tools/set_inference.py MODEL.pth --refine-steps 0 --flip-tta true
    python tools/set_inference.py MODEL.pth --refine-steps 0 --flip-tta false --recrop-tta true

They only change how the trained network is applied, so they live in the preprocessing contract;
the bundled model was given the values of configs/fkd-best.yaml this way (they are the measured best
trade-off of speed and accuracy; see the README's inference ablation). `--recrop-tta true` makes the
accurate mode (`fkd predict --recrop-tta`) the model's own default; left out, it is kept as it is.
"""

import argparse


from fkd_cli.checkpoint import load_checkpoint, update_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--refine-steps", type=int, required=True)
    parser.add_argument("--flip-tta", choices=("true", "false"), required=True)
    parser.add_argument("--recrop-tta", choices=("true", "false"), default=None)
    args = parser.parse_args()
    preprocess = load_checkpoint(args.model)["preprocess"]
    requested = {"refine_steps": args.refine_steps, "flip_tta": args.flip_tta == "true"}
    if args.recrop_tta is not None:
        requested["recrop_tta"] = args.recrop_tta == "true"
    # the config keeps what was asked for; the contract what the model can do (as Preprocess.from_config decides)
    effective = {**requested, "flip_tta": requested["flip_tta"] and preprocess["flip_permutation"] is not None}
    if "recrop_tta" in requested:
        effective["recrop_tta"] = requested["recrop_tta"] and preprocess["framing"] == "face"
    update_checkpoint(args.model, args.model, preprocess=effective, config=requested)
    print(f"{args.model}: " + " ".join(f"{k}={v}" for k, v in effective.items()))


if __name__ == "__main__":
    main()
