"""Run the classifier that `rnnkit export rnnkit-demo/classify --onnx classify.onnx` wrote in
onnxruntime on the demo's test lines, and print how far it is from rnnkit's own logits."""

import numpy as np
import onnxruntime as ort

from rnnkit.interop import onnx_feed
from rnnkit.pipeline import Task, read_task_file

task = Task.load("rnnkit-demo/classify")
raw = read_task_file("classify", "rnnkit-demo/classify/data/test.txt")
batch = task.model.collate(task.encode(raw))  # mixed lengths, padded
(onnx_logits,) = ort.InferenceSession("classify.onnx").run(None, onnx_feed(task.model, batch)[0])
print(len(raw), np.abs(onnx_logits - task.model.predict_logits(batch)).max())
