"""Set a checkpoint's inference-time options (re-crop steps, flip TTA) without retraining.

    python tools/set_inference.py MODEL.pth --refine-steps 0 --flip-tta true

Both only change how the trained network is applied, so they live in the preprocessing contract;
the bundled model was given the values of configs/fkd-best.yaml this way (they are the measured best
trade-off of speed and accuracy; see the README's inference ablation).
"""

import argparse


from fkd_cli.checkpoint import load_checkpoint, update_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--refine-steps", type=int, required=True)
    parser.add_argument("--flip-tta", choices=("true", "false"), required=True)
    args = parser.parse_args()
    flip = args.flip_tta == "true"
    can_flip = load_checkpoint(args.model)["preprocess"]["flip_permutation"] is not None
    update_checkpoint(args.model, args.model, preprocess={"refine_steps": args.refine_steps, "flip_tta": flip and can_flip},
                      config={"refine_steps": args.refine_steps, "flip_tta": flip})
    print(f"{args.model}: refine_steps={args.refine_steps} flip_tta={flip}")


if __name__ == "__main__":
    main()
