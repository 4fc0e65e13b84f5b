"""The trained network as ONNX, checked against OpenCV's DNN module (which the library already has).

    export.py MODEL.pt OUT.onnx"""
import sys

import cv2
import numpy as np
import torch

from common import SIDE, Net

torch.set_num_threads(1)
net = Net()
net.load_state_dict(torch.load(sys.argv[1]))
net.eval()
x = torch.rand(4, 3, SIDE, SIDE)
torch.onnx.export(net, (x[:1],), sys.argv[2], dynamo=False, input_names=["image"], output_names=["embedding"],
                  opset_version=17, dynamic_axes={"image": {0: "n"}, "embedding": {0: "n"}})
cv = cv2.dnn.readNetFromONNX(sys.argv[2])
cv.setInput(x.numpy())
with torch.no_grad():
    print("max |torch - cv2.dnn|:", float(np.abs(net(x).numpy() - cv.forward()).max()))
