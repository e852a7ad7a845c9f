"""Write the three MTCNN stages as ONNX files beside their weights (fkd_cli/assets/mtcnn-*.onnx), which
the detector runs on ONNX Runtime. P-Net takes a normalised pyramid level; R-Net and O-Net take the photo
(1, 3, H, W, float 0..255) and the candidate boxes (K, 4) and cut their own crops (RoiAlign), so that the
detector needs no torch. The networks go through `mtcnn_nets.for_export` first: the same functions in ops
ONNX Runtime runs faster (PReLU as FastPReLU, the face probability as a sigmoid). The weights never change, so this runs once; `tests/test_detectors.py` checks
that the files and the PyTorch networks agree.

    python tools/export_mtcnn.py
"""

import warnings
from importlib import resources

import torch
import torchvision  # noqa: F401  (registers roi_align's ONNX export)

from fkd_cli.mtcnn_nets import CutAndRun, for_export, load_networks


def main() -> None:
    folder = resources.files("fkd_cli") / "assets"
    pnet, rnet, onet = (for_export(net) for net in load_networks())
    photo = {0: "one", 2: "h", 3: "w"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter warns that it is the old one
        for name, net, inputs, names, axes in (
                ("pnet", pnet, (torch.zeros(1, 3, 100, 120),), ["x"], {"x": {0: "n", 2: "h", 3: "w"}}),
                ("rnet", CutAndRun(rnet, 24), (torch.zeros(1, 3, 100, 120), torch.tensor([[10.0, 10, 50, 50]] * 4)),
                 ["image", "boxes"], {"image": photo, "boxes": {0: "n"}}),
                ("onet", CutAndRun(onet, 48), (torch.zeros(1, 3, 100, 120), torch.tensor([[10.0, 10, 50, 50]] * 4)),
                 ["image", "boxes"], {"image": photo, "boxes": {0: "n"}})):
            target = folder / f"mtcnn-{name}.onnx"
            torch.onnx.export(net, inputs, str(target), input_names=names, output_names=["offsets", "prob"],
                              dynamic_axes={**axes, "offsets": {0: "n"}, "prob": {0: "n"}}, opset_version=17, dynamo=False)
            print(f"wrote {target}")


if __name__ == "__main__":
    main()
