"""Write the three MTCNN stages as ONNX files beside their weights (fkd_cli/assets/mtcnn-*.onnx), which
the detector runs on ONNX Runtime when it is installed. The weights never change, so this ran once;
`tests/test_detectors.py` checks that the files and the PyTorch networks agree.

    python tools/export_mtcnn.py
"""

import warnings
from importlib import resources

import torch

from fkd_cli.mtcnn import load_networks


def main() -> None:
    folder = resources.files("fkd_cli") / "assets"
    pnet, rnet, onet = load_networks()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter warns that it is the old one
        for name, net, shape, axes in (("pnet", pnet, (1, 3, 100, 120), {"x": {0: "n", 2: "h", 3: "w"}}),
                                        ("rnet", rnet, (4, 3, 24, 24), {"x": {0: "n"}}),
                                        ("onet", onet, (4, 3, 48, 48), {"x": {0: "n"}})):
            target = folder / f"mtcnn-{name}.onnx"
            torch.onnx.export(net, torch.zeros(shape), str(target), input_names=["x"], output_names=["offsets", "prob"],
                              dynamic_axes={**axes, "offsets": {0: "n"}, "prob": {0: "n"}}, opset_version=17, dynamo=False)
            print(f"wrote {target}")


if __name__ == "__main__":
    main()
