"""The v2 binary tensor data extension: Triton's own client with its defaults, and bad bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from model.data import Mnist
from model.inference import Predictor
from tests.app.conftest import make_settings
from tests.conftest import SHIPPED_MODEL
from tests.live import LiveServer

INFER = "/v2/models/mnist-logreg/infer"


@pytest.fixture(scope="module")
def shipped(data_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(SHIPPED_MODEL, data_dir))) as client:
        yield client


def images01(mnist: Mnist, n: int) -> np.ndarray:
    """The first `n` test digits as FP32 pixels 0..1, (n, 784)."""
    return (mnist.test_images[:n].reshape(n, 784) / np.float32(255)).astype(np.float32)


def binary_body(tensor: np.ndarray, **request: Any) -> tuple[bytes, dict[str, str]]:
    """A request as Triton's client builds it: the JSON header, then the input's bytes."""
    header = json.dumps({"inputs": [{"name": "input", "shape": list(tensor.shape),
                                     "datatype": "FP32",
                                     "parameters": {"binary_data_size": tensor.nbytes}}],
                         **request}).encode()
    return header + tensor.tobytes(), {"Inference-Header-Content-Length": str(len(header)),
                                       "Content-Type": "application/octet-stream"}


@pytest.mark.slow
def test_tritons_client_with_its_defaults_gets_binary_answers(mnist: Mnist,
                                                               data_dir: Path) -> None:
    import tritonclient.http as triton
    import tritonclient.utils as triton_utils

    x = images01(mnist, 1000)
    expected = Predictor.from_path(SHIPPED_MODEL, device="cpu").probabilities(
        mnist.test_images[:1000])
    with LiveServer(model_path=SHIPPED_MODEL, data_dir=data_dir) as server:
        server.wait_ready()
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            assert client.is_server_ready() and client.is_model_ready("mnist-logreg")
            assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
            tensor = triton.InferInput("input", [1000, 784], "FP32")
            tensor.set_data_from_numpy(x)  # binary_data=True: Triton's default
            result = client.infer("mnist-logreg", [tensor])  # no outputs: all in binary
            outputs = {o["name"]: o for o in result.get_response()["outputs"]}
            assert outputs["probabilities"]["parameters"] == {"binary_data_size": 40_000}
            assert "data" not in outputs["probabilities"]
            probabilities = result.as_numpy("probabilities")
            digits = result.as_numpy("digit")
            assert probabilities.shape == (1000, 10) and digits.dtype == np.int64
            np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
            assert (digits == expected.argmax(axis=1)).all()
            assert (digits == mnist.test_labels[:1000]).mean() > 0.9

            # One output asked for in JSON, the other in binary, on a 28x28-shaped input.
            square = triton.InferInput("input", [2, 28, 28], "FP32")
            square.set_data_from_numpy(x[:2].reshape(2, 28, 28))
            mixed = client.infer("mnist-logreg", [square], outputs=[
                triton.InferRequestedOutput("digit", binary_data=False),
                triton.InferRequestedOutput("probabilities")])
            by_name = {o["name"]: o for o in mixed.get_response()["outputs"]}
            assert by_name["digit"]["data"] == [7, 2]
            assert mixed.as_numpy("probabilities").shape == (2, 10)

            # JSON input (binary_data=False): the client then sends a bare JSON body with no
            # Content-Type, which is what a hostile page can post cross-site without a
            # preflight, so it is refused with a sentence; said to be JSON, it is answered
            # (outputs in binary as asked).
            plain = triton.InferInput("input", [1, 784], "FP32")
            plain.set_data_from_numpy(x[:1], binary_data=False)
            with pytest.raises(triton_utils.InferenceServerException, match="Content-Type"):
                client.infer("mnist-logreg", [plain])
            typed = client.infer("mnist-logreg", [plain],
                                 headers={"Content-Type": "application/json"})
            assert typed.as_numpy("digit").tolist() == [7]
        finally:
            client.close()


def test_binary_answer_matches_the_json_answer(shipped: TestClient, mnist: Mnist) -> None:
    x = images01(mnist, 5)
    body, headers = binary_body(x, id="b1", outputs=[
        {"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "digit"}])
    answer = shipped.post(INFER, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    length = int(answer.headers["inference-header-content-length"])
    header = json.loads(answer.content[:length])
    assert header["id"] == "b1"
    probabilities, digit = header["outputs"]
    assert probabilities["parameters"]["binary_data_size"] == 5 * 10 * 4
    assert digit["data"] == [7, 2, 1, 0, 4]  # asked for without binary_data: JSON
    binary = np.frombuffer(answer.content[length:], dtype="<f4").reshape(5, 10)
    as_json = shipped.post(INFER, json={"inputs": [{"name": "input", "shape": [5, 784],
                                                    "datatype": "FP32",
                                                    "data": x.ravel().tolist()}]})
    from_json = np.array(as_json.json()["outputs"][0]["data"]).reshape(5, 10)
    np.testing.assert_allclose(binary, from_json, atol=1e-6)


def test_binary_answer_without_binary_outputs_is_plain_json(shipped: TestClient,
                                                             mnist: Mnist) -> None:
    body, headers = binary_body(images01(mnist, 2))
    answer = shipped.post(INFER, content=body, headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in answer.headers
    assert answer.json()["outputs"][1]["data"] == [7, 2]


def bad_binary(shipped: TestClient, body: bytes, header_length: str | bytes) -> str:
    answer = shipped.post(INFER, content=body,
                          headers={"Inference-Header-Content-Length": header_length,
                                   "Content-Type": "application/octet-stream"})
    assert answer.status_code == 400, answer.text
    return str(answer.json()["error"])


def test_bad_binary_requests_get_a_sentence(shipped: TestClient, mnist: Mnist) -> None:
    x = images01(mnist, 2)
    body, headers = binary_body(x)
    length = headers["Inference-Header-Content-Length"]
    assert "not a byte count" in bad_binary(shipped, body, "twelve")
    assert "not a byte count" in bad_binary(shipped, body, b"\xb2")  # '²' in latin-1
    assert "length of the JSON part" in bad_binary(shipped, body, str(len(body) + 1))
    assert "length of the JSON part" in bad_binary(shipped, body, "0")
    assert "not valid JSON" in bad_binary(shipped, body, str(int(length) - 1))
    assert "add up to" in bad_binary(shipped, body + b"\0\0\0\0", length)
    short, short_headers = binary_body(x[:, :-1])  # 783 pixels a row
    assert "shape" in bad_binary(shipped, short, short_headers["Inference-Header-Content-Length"])
    wrong = json.dumps({"inputs": [{"name": "input", "shape": [2, 784], "datatype": "FP32",
                                    "parameters": {"binary_data_size": 100}}]}).encode()
    assert "needs 6272" in bad_binary(shipped, wrong + bytes(100), str(len(wrong)))
    both = json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                                   "data": [0] * 784,
                                   "parameters": {"binary_data_size": 3136}}]}).encode()
    assert "both 'data' and" in bad_binary(shipped, both + bytes(3136), str(len(both)))
    negative = json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                                       "parameters": {"binary_data_size": -4}}]}).encode()
    assert "byte count" in bad_binary(shipped, negative, str(len(negative)))


@pytest.mark.parametrize(("value", "sentence"), [
    (np.nan, "NaN or infinity"), (np.inf, "NaN or infinity"), (-0.5, "between 0 and 1"),
    (255.0, "between 0 and 1")])
def test_binary_pixels_are_checked_like_json_ones(shipped: TestClient, mnist: Mnist,
                                                   value: float, sentence: str) -> None:
    x = images01(mnist, 3)
    x[1, 400] = value
    body, headers = binary_body(x)
    assert sentence in bad_binary(shipped, body, headers["Inference-Header-Content-Length"])


def test_binary_flags_must_be_booleans(shipped: TestClient, mnist: Mnist) -> None:
    x = images01(mnist, 1)
    body, headers = binary_body(x, parameters={"binary_data_output": "yes"})
    assert "true or false" in bad_binary(shipped, body, headers["Inference-Header-Content-Length"])
    body, headers = binary_body(x, outputs=[{"name": "digit", "parameters": {"binary_data": 1}}])
    assert "true or false" in bad_binary(shipped, body, headers["Inference-Header-Content-Length"])
    body, headers = binary_body(x, outputs=[{"name": "digit", "parameters": {"classification": 3}}])
    assert "classification" in bad_binary(shipped, body,
                                          headers["Inference-Header-Content-Length"])


def test_a_request_without_content_type_is_served_as_tritons_client_sends_it(
        shipped: TestClient, mnist: Mnist) -> None:
    # tritonclient.http sends no Content-Type at all: only Inference-Header-Content-Length.
    body, headers = binary_body(images01(mnist, 1))
    del headers["Content-Type"]
    answer = shipped.post(INFER, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][1]["data"] == [7]


def test_the_verdict_is_answered_only_when_asked_for(shipped: TestClient, mnist: Mnist) -> None:
    """Naming outputs without the verdict leaves it out (it is not judged: ten times the rest of
    a batch's cost); naming it, or naming none, answers it."""
    x = images01(mnist, 3)
    inputs = [{"name": "input", "shape": [3, 784], "datatype": "FP32", "data": x.ravel().tolist()}]
    for outputs, names in (([{"name": "digit"}], ["digit"]),
                           ([{"name": "verdict"}, {"name": "digit"}], ["verdict", "digit"]),
                           (None, ["probabilities", "digit", "verdict"])):
        request: dict[str, Any] = {"inputs": inputs}
        if outputs is not None:
            request["outputs"] = outputs
        answer = shipped.post(INFER, json=request)
        assert answer.status_code == 200, answer.text
        got = {o["name"]: o["data"] for o in answer.json()["outputs"]}
        assert list(got) == names
        assert got["digit"] == [7, 2, 1]
        if "verdict" in got:
            assert got["verdict"] == ["digit", "digit", "digit"]
