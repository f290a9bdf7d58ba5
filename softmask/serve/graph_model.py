"""softmask_<graph> of the ``python`` graph variant: one exported graph in ONNX Runtime on
Triton's python backend. Imports no torch: four such stubs start with the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class GraphModel:
    """softmask_<graph> of the ``python`` variant: ``1/model.onnx`` in an ONNX Runtime session;
    every declared input in, every requested output out."""

    def initialize(self, args: dict[str, Any]) -> None:
        import onnxruntime
        import triton_python_backend_utils as pb  # only inside Triton's python backend

        self.pb = pb
        config = json.loads(args["model_config"])
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        responses = []
        for request in requests:
            feeds = {}
            for name in self.inputs:
                tensor = pb.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    feeds[name] = tensor.as_numpy()
            wanted = request.requested_output_names() or self.outputs
            try:
                values = self.session.run(list(wanted), feeds)
            except Exception as error:  # noqa: BLE001 - answer the request with the error
                responses.append(pb.InferenceResponse(error=pb.TritonError(str(error))))
                continue
            responses.append(pb.InferenceResponse(
                output_tensors=[pb.Tensor(n, np.ascontiguousarray(v)) for n, v in zip(wanted, values)]
            ))
        return responses
