"""The engine's specification: each node's derivative, the MLP graph, the lab's accounting, and
the agreement of the fast path with the graph and with torch.autograd.

Every oracle here is written in plain torch (torch.autograd for derivatives, a hand-written lab
loop for the accounting), independently of the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tuner_tui.engine.architecture import count_parameters
from tuner_tui.engine.backend_base import EVAL_CHUNK_ROWS
from tuner_tui.engine.backend_registry import make_backend
from tuner_tui.engine.batching import DeviceData, batch_bounds, epoch_order, steps_per_epoch
from tuner_tui.engine.network import build_mlp, topological_order
from tuner_tui.engine.nodes import LAB4_LOG_EPSILON, Input, Linear, Regularization, ReLU, Softmax, Sum
from tuner_tui.engine.params import MLPParams, init_params

F64 = torch.float64
CLASSES = 10
ENGINES = ("native", "graph", "autograd")
CONVENTIONS = ("lab4", "standard")

# The synthetic training set: 103 samples in batches of 7 → 15 steps, the last one of 5 rows.
SAMPLES, FEATURES, BATCH = 103, 20, 7
LAST_STEP = steps_per_epoch(SAMPLES, BATCH) - 1


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _one_hot(labels: torch.Tensor, classes: int = CLASSES, dtype: torch.dtype = F64) -> torch.Tensor:
    return F.one_hot(labels, classes).to(dtype)


def _synthetic_data(device: str = "cpu", samples: int = SAMPLES, test_samples: int = 31) -> DeviceData:
    g = _generator(1234)
    return DeviceData.from_tensors(
        torch.randint(0, 256, (samples, FEATURES), generator=g, dtype=torch.uint8),
        torch.randint(0, CLASSES, (samples,), generator=g),
        torch.randint(0, 256, (test_samples, FEATURES), generator=g, dtype=torch.uint8),
        torch.randint(0, CLASSES, (test_samples,), generator=g),
        CLASSES,
        device,
    )


def _params(hidden=(16,), conventions="lab4", dtype=F64, device="cpu", seed=0) -> MLPParams:
    return init_params(
        FEATURES, hidden, CLASSES, conventions=conventions, seed=seed, dtype=dtype, device=device
    )


def _backend(engine, params, data, *, lr=0.05, reg=0.0, conventions="lab4", batch_size=BATCH, seed=0):
    return make_backend(
        engine, params, data, lr=lr, reg=reg, batch_size=batch_size, conventions=conventions,
        seed=seed,
    )


def _run_epoch_steps(backend, epoch: int, steps: int) -> None:
    backend.start_epoch(epoch)
    for step in range(steps):
        backend.train_step(step)


def _hand_logits(params: MLPParams, images_u8: torch.Tensor) -> torch.Tensor:
    """The MLP's forward pass written out: pixels / 255, Linear, ReLU, …, Linear."""
    a = images_u8.to(params.weights[0].dtype) / 255.0
    for index, (w, b) in enumerate(zip(params.weights, params.biases, strict=True)):
        a = a @ w.detach().t() + b.detach()
        if index < len(params.weights) - 1:
            a = torch.relu(a)
    return a


def _lab4_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits - logits.amax(dim=1, keepdim=True), dim=1)
    return (-y * torch.log(p + LAB4_LOG_EPSILON)).sum() / logits.shape[1]


def _standard_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (-(y * torch.log_softmax(logits, dim=1)).sum(dim=1)).mean()


LOSSES = {"lab4": _lab4_loss, "standard": _standard_loss}


def _node_input_grads(node, inputs: list[Input], upstream: torch.Tensor) -> list[torch.Tensor]:
    """Run `node` forward, seed its grad with `upstream`, run backward; the inputs' grads."""
    for i in inputs:
        i.clear_grad()
    node.forward()
    node.grad = upstream
    node.backward()
    return [i.incoming() for i in inputs]


def _autograd_grads(formula, values: list[torch.Tensor], upstream: torch.Tensor) -> list[torch.Tensor]:
    leaves = [v.clone().requires_grad_(True) for v in values]
    out = formula(*leaves)
    return list(torch.autograd.grad((out * upstream).sum(), leaves))


# --- 1. Each node's backward rule against torch.autograd -----------------------------------------


def test_linear_backward_matches_autograd_for_input_weight_and_bias():
    g = _generator(1)
    x, w, b = (torch.randn(*s, generator=g, dtype=F64) for s in [(6, 5), (4, 5), (4,)])
    upstream = torch.randn(6, 4, generator=g, dtype=F64)
    nodes = [Input(x), Input(w, trainable=True), Input(b, trainable=True)]
    linear = Linear(*nodes)

    got = _node_input_grads(linear, nodes, upstream)
    want = _autograd_grads(lambda x, w, b: x @ w.t() + b, [x, w, b], upstream)

    torch.testing.assert_close(linear.output, x @ w.t() + b)
    for name, g_got, g_want in zip(("dx", "dW", "db"), got, want, strict=True):
        torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-12, msg=name)


def test_relu_backward_matches_autograd():
    g = _generator(2)
    x = torch.randn(8, 6, generator=g, dtype=F64)
    upstream = torch.randn(8, 6, generator=g, dtype=F64)
    source = Input(x)
    relu = ReLU(source)

    (got,) = _node_input_grads(relu, [source], upstream)
    (want,) = _autograd_grads(torch.relu, [x], upstream)

    torch.testing.assert_close(relu.output, torch.relu(x))
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def _softmax_batch(conventions: str):
    """Random logits and one-hot labels; under lab4 the last row's label has p_y ≈ 1e-9."""
    g = _generator(3)
    logits = 3 * torch.randn(7, CLASSES, generator=g, dtype=F64)
    labels = torch.randint(0, CLASSES, (7,), generator=g)
    if conventions == "lab4":
        logits[-1] = 0.0
        logits[-1, labels[-1]] = -18.5  # p_y = e^-18.5 / (9 + e^-18.5) ≈ 1e-9, below the 1e-8
    return logits, _one_hot(labels)


@pytest.mark.parametrize("conventions", CONVENTIONS)
def test_softmax_forward_is_the_conventions_loss(conventions):
    logits, y = _softmax_batch(conventions)
    node = Softmax(Input(logits), Input(y), conventions)
    node.forward()
    torch.testing.assert_close(node.output, LOSSES[conventions](logits, y), rtol=1e-13, atol=0)


@pytest.mark.parametrize("conventions", CONVENTIONS)
def test_softmax_backward_matches_autograd(conventions):
    logits, y = _softmax_batch(conventions)
    source, labels = Input(logits), Input(y)
    node = Softmax(source, labels, conventions)
    upstream = torch.tensor(1.7, dtype=F64)  # a non-unit seed checks that `grad` is applied

    (got,) = _node_input_grads(node, [source], upstream)
    (want,) = _autograd_grads(lambda o: LOSSES[conventions](o, y), [logits], upstream)

    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-15)


def test_softmax_lab4_gradient_keeps_the_log_epsilon_factor_for_tiny_p_y():
    """With p_y ≈ 1e-9 the exact derivative is (p − y)·p_y/(p_y + 1e-8)/C, about a tenth of the
    textbook (p − y)/C: the node must not drop the lab's epsilon."""
    logits, y = _softmax_batch("lab4")
    source = Input(logits)
    node = Softmax(source, Input(y), "lab4")
    (got,) = _node_input_grads(node, [source], torch.tensor(1.0, dtype=F64))

    p = torch.softmax(logits, dim=1)
    p_y = (p * y).sum(dim=1, keepdim=True)
    assert p_y[-1].item() == pytest.approx(1e-9, rel=0.2)
    textbook = (p - y) / CLASSES
    exact = textbook * p_y / (p_y + LAB4_LOG_EPSILON)
    torch.testing.assert_close(got, exact, rtol=1e-10, atol=1e-15)
    assert got[-1].abs().max() < 0.2 * textbook[-1].abs().max()


def test_regularization_backward_matches_autograd():
    g = _generator(4)
    w1, w2 = torch.randn(4, 5, generator=g, dtype=F64), torch.randn(3, 4, generator=g, dtype=F64)
    nodes = [Input(w1, trainable=True), Input(w2, trainable=True)]
    node = Regularization(*nodes, strength=0.3)
    upstream = torch.tensor(1.3, dtype=F64)

    def formula(a, b):
        return 0.5 * 0.3 * (a.square().sum() + b.square().sum())

    got = _node_input_grads(node, nodes, upstream)
    want = _autograd_grads(formula, [w1, w2], upstream)

    torch.testing.assert_close(node.output, formula(w1, w2))
    for g_got, g_want in zip(got, want, strict=True):
        torch.testing.assert_close(g_got, g_want, rtol=1e-13, atol=0)


def test_sum_backward_matches_autograd():
    terms = [torch.tensor(v, dtype=F64) for v in (0.5, -2.0, 3.25)]
    nodes = [Input(t) for t in terms]
    node = Sum(*nodes)
    upstream = torch.tensor(0.7, dtype=F64)

    got = _node_input_grads(node, nodes, upstream)
    want = _autograd_grads(lambda a, b, c: a + b + c, terms, upstream)

    assert node.value().item() == pytest.approx(1.75)
    for g_got, g_want in zip(got, want, strict=True):
        torch.testing.assert_close(g_got, g_want)


def test_a_node_feeding_two_others_accumulates_both_gradients():
    shared = Input(torch.tensor(2.0, dtype=F64))
    node = Sum(shared, shared)
    (got,) = _node_input_grads(node, [shared], torch.tensor(1.5, dtype=F64))
    assert got.item() == 3.0


def test_topological_order_lists_each_node_once_after_its_inputs():
    params = _params(hidden=(8, 4))
    graph = build_mlp(params, reg=0.1)
    order = topological_order(graph.network.output)
    position = {id(n): i for i, n in enumerate(order)}
    assert len(position) == len(order)
    assert order[-1] is graph.network.output
    for node in order:
        assert all(position[id(i)] < position[id(node)] for i in node.inputs)


# --- 2. The whole MLP graph against torch.autograd -----------------------------------------------


@pytest.mark.parametrize("hidden", [(16,), (16, 8)], ids=["1hidden", "2hidden"])
@pytest.mark.parametrize("reg", [0.0, 0.01])
@pytest.mark.parametrize("conventions", CONVENTIONS)
def test_network_gradients_match_autograd_of_the_objective(conventions, reg, hidden):
    g = _generator(5)
    params = _params(hidden, conventions)
    x = torch.rand(9, FEATURES, generator=g, dtype=F64)
    y = _one_hot(torch.randint(0, CLASSES, (9,), generator=g))
    graph = build_mlp(params.clone(), conventions=conventions, reg=reg)
    graph.x.set(x)
    graph.y.set(y)

    objective = graph.network.forward()
    graph.network.backward()

    leaves = [t.clone().requires_grad_(True) for t in params.tensors()]
    weights, biases = leaves[0::2], leaves[1::2]
    a = x
    for index, (w, b) in enumerate(zip(weights, biases, strict=True)):
        a = a @ w.t() + b
        if index < len(weights) - 1:
            a = torch.relu(a)
    want_objective = LOSSES[conventions](a, y) + 0.5 * reg * sum(w.square().sum() for w in weights)
    want = torch.autograd.grad(want_objective, leaves)

    torch.testing.assert_close(objective, want_objective.detach(), rtol=1e-13, atol=0)
    got = [t for pair in zip(graph.weights, graph.biases, strict=True) for t in pair]
    assert [n.trainable for n in got] == [True] * len(got)
    assert graph.network.parameters == got
    for index, (node, g_want) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(node.grad, g_want, rtol=1e-10, atol=1e-14, msg=f"param {index}")


def test_network_step_updates_the_shared_parameter_tensors_in_place():
    params = _params()
    before = params.clone()
    graph = build_mlp(params)
    graph.x.set(torch.rand(4, FEATURES, dtype=F64, generator=_generator(6)))
    graph.y.set(_one_hot(torch.tensor([0, 1, 2, 3])))
    graph.network.forward()
    graph.network.backward()
    graph.network.step(0.5)
    for t, t0, node in zip(params.tensors(), before.tensors(), graph.network.parameters, strict=True):
        torch.testing.assert_close(t, t0 - 0.5 * node.incoming())


# --- 3. The lab's accounting, through the backends ----------------------------------------------


@pytest.mark.parametrize("batch", [1, 7, 100])
def test_lab4_softmax_output_is_batch_over_classes_times_mean_cross_entropy(batch):
    g = _generator(7)
    logits = torch.randn(batch, CLASSES, generator=g, dtype=F64)
    labels = torch.randint(0, CLASSES, (batch,), generator=g)
    node = Softmax(Input(logits), Input(_one_hot(labels)), "lab4")
    node.forward()
    p_y = torch.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    mean_ce = (-torch.log(p_y + LAB4_LOG_EPSILON)).mean()
    torch.testing.assert_close(node.output, batch / CLASSES * mean_ce, rtol=1e-13, atol=0)
    torch.testing.assert_close(node.sample_losses, -torch.log(p_y + LAB4_LOG_EPSILON))


@pytest.mark.parametrize("step", [0, LAST_STEP], ids=["full_batch", "partial_batch"])
def test_graph_backend_reported_loss_is_batch_over_classes_times_mean_cross_entropy(step):
    data = _synthetic_data()
    backend = _backend("graph", _params(), data)
    _run_epoch_steps(backend, 0, step)
    start, stop = batch_bounds(step, BATCH, SAMPLES)
    logits = _hand_logits(backend.params, data.train_images[start:stop])
    backend.train_step(step)

    p_y = torch.softmax(logits, dim=1).gather(1, data.train_labels[start:stop, None])
    mean_ce = (-torch.log(p_y + LAB4_LOG_EPSILON)).mean()
    rows = stop - start
    torch.testing.assert_close(backend.graph.loss.output, rows / CLASSES * mean_ce)
    torch.testing.assert_close(
        backend.graph.loss.output, -backend.log_likelihoods[start:stop].sum() / CLASSES
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_partial_last_batch_is_trained_on_and_counted(engine):
    data = _synthetic_data()
    backend = _backend(engine, _params(), data)
    assert SAMPLES % BATCH != 0 and backend.steps_per_epoch == LAST_STEP + 1
    _run_epoch_steps(backend, 0, LAST_STEP)
    before = backend.params.clone()

    backend.train_step(LAST_STEP)

    for t, t0 in zip(backend.params.tensors(), before.tensors(), strict=True):
        assert not torch.equal(t.detach(), t0.detach())
    totals = backend.epoch_totals(LAST_STEP + 1)
    assert (totals.samples, totals.steps) == (SAMPLES, LAST_STEP + 1)
    assert (backend.log_likelihoods < 0).all()  # every sample, the last 5 included, was scored
    assert totals.loss_sum == pytest.approx(-backend.log_likelihoods.sum().item(), rel=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("conventions", CONVENTIONS)
def test_training_predictions_are_made_by_the_weights_before_the_update(engine, conventions):
    data = _synthetic_data()
    backend = _backend(engine, _params(conventions=conventions), data, lr=2.0, conventions=conventions)
    step = 3
    _run_epoch_steps(backend, 0, step)
    images = backend.batch_images(step)
    before = _hand_logits(backend.params, images).argmax(dim=1)

    backend.train_step(step)

    after = _hand_logits(backend.params, images).argmax(dim=1)
    assert not torch.equal(before, after), "the update must change some prediction for this test"
    start, stop, _ = backend.batch_indices(step)
    assert torch.equal(backend.predictions[start:stop], before)


def _hand_written_lab_epoch(data: DeviceData, params: MLPParams, *, lr: float, reg: float):
    """The lab's loop, one epoch in file order: returns (params, reported loss, train accuracy %)."""
    w1, b1, w2, b2 = (t.clone().requires_grad_(True) for t in params.tensors())
    n = data.train_size
    batch_losses, correct = [], 0
    for i in range(0, n, BATCH):
        x = data.train_images[i : i + BATCH].to(F64) / 255.0
        labels = data.train_labels[i : i + BATCH]
        y = _one_hot(labels)
        o = torch.relu(x @ w1.t() + b1) @ w2.t() + b2
        p = torch.softmax(o - o.max(dim=1, keepdim=True).values, dim=1)
        k = (-y * torch.log(p + 1e-8)).sum(dim=0)  # one term per class
        loss = k.mean()
        s = reg / 2 * ((w1**2).sum() + (w2**2).sum())
        (loss + s).backward()
        correct += int((o.argmax(dim=1) == labels).sum())
        batch_losses.append(loss.item())
        with torch.no_grad():
            for t in (w1, b1, w2, b2):
                assert t.grad is not None
                t.sub_(lr * t.grad)
                t.grad = None
    trained = MLPParams([w1.detach(), w2.detach()], [b1.detach(), b2.detach()])
    return trained, sum(batch_losses) / (n // BATCH), 100.0 * correct / n


@pytest.fixture(scope="module")
def lab_epoch():
    data = _synthetic_data()
    initial = _params(hidden=(16,))
    return data, initial, _hand_written_lab_epoch(data, initial, lr=0.03, reg=0.01)


@pytest.mark.parametrize("engine", ENGINES)
def test_lab4_reported_loss_and_accuracy_match_the_hand_written_lab_loop(engine, lab_epoch):
    data, initial, (_, lab_loss, lab_accuracy) = lab_epoch
    backend = _backend(engine, initial.clone(), data, lr=0.03, reg=0.01)
    _run_epoch_steps(backend, 0, backend.steps_per_epoch)

    totals = backend.epoch_totals(backend.steps_per_epoch)
    reported_loss = totals.loss_sum / CLASSES / (SAMPLES // BATCH)
    assert reported_loss == pytest.approx(lab_loss, rel=1e-12)
    assert 100.0 * totals.correct / SAMPLES == pytest.approx(lab_accuracy)


@pytest.mark.parametrize("engine", ENGINES)
def test_lab4_epoch_parameters_match_the_hand_written_lab_loop(engine, lab_epoch):
    data, initial, (lab_params, _, _) = lab_epoch
    backend = _backend(engine, initial.clone(), data, lr=0.03, reg=0.01)
    _run_epoch_steps(backend, 0, backend.steps_per_epoch)
    for got, want in zip(backend.params.tensors(), lab_params.tensors(), strict=True):
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_lab4_walks_the_training_set_in_file_order(epoch):
    assert epoch_order(SAMPLES, conventions="lab4", seed=3, epoch=epoch, device="cpu") is None
    data = _synthetic_data()
    backend = _backend("native", _params(), data)
    backend.start_epoch(epoch)
    assert torch.equal(backend.batch_images(2), data.train_images[14:21])
    assert torch.equal(backend.labels_in_order, data.train_labels)


def test_standard_reshuffles_every_epoch_reproducibly_from_the_seed():
    def order(seed, epoch):
        return epoch_order(SAMPLES, conventions="standard", seed=seed, epoch=epoch, device="cpu")

    first, second = order(3, 0), order(3, 1)
    assert torch.equal(first.sort().values, torch.arange(SAMPLES))
    assert torch.equal(second.sort().values, torch.arange(SAMPLES))
    assert not torch.equal(first, second)
    assert not torch.equal(first, torch.arange(SAMPLES))
    assert torch.equal(order(3, 1), second)
    assert not torch.equal(order(4, 1), second)


@pytest.mark.parametrize("engine", ENGINES)
def test_standard_backend_takes_batches_and_labels_in_the_epoch_permutation(engine):
    data = _synthetic_data()
    backend = _backend(engine, _params(conventions="standard"), data, conventions="standard", seed=3)
    backend.start_epoch(1)
    order = epoch_order(SAMPLES, conventions="standard", seed=3, epoch=1, device="cpu")
    assert order is not None
    assert torch.equal(backend.batch_images(2), data.train_images[order[14:21]])
    assert torch.equal(backend.labels_in_order, data.train_labels[order])
    backend.train_step(0)
    logits = _hand_logits(_params(conventions="standard"), data.train_images[order[:BATCH]])
    want = torch.log_softmax(logits, dim=1).gather(1, data.train_labels[order[:BATCH], None])
    torch.testing.assert_close(backend.log_likelihoods[:BATCH], want)


# --- 4. Fast path == graph == torch.autograd -----------------------------------------------------

AGREEMENT_STEPS = 50  # 3 epochs of 15 steps and 5 more: crosses epoch boundaries and partial batches
TOLERANCE = {F64: 1e-10, torch.float32: 1e-4}


def _train_steps(backend, total_steps: int) -> list:
    """Run `total_steps` steps across epochs; the EpochTotals at each epoch's end and at the stop."""
    totals = []
    per_epoch = backend.steps_per_epoch
    for global_step in range(total_steps):
        epoch, step = divmod(global_step, per_epoch)
        if step == 0:
            backend.start_epoch(epoch)
        backend.train_step(step)
        if step == per_epoch - 1 or global_step == total_steps - 1:
            totals.append(backend.epoch_totals(step + 1))
    return totals


@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("hidden", [(32,), (32, 16)], ids=["1hidden", "2hidden"])
@pytest.mark.parametrize("reg", [0.0, 0.001])
@pytest.mark.parametrize("conventions", CONVENTIONS)
def test_native_graph_and_autograd_backends_agree_after_50_steps(conventions, reg, hidden, dtype):
    data = _synthetic_data()
    initial = _params(hidden, conventions, dtype=dtype)
    results = {}
    for engine in ENGINES:
        backend = _backend(engine, initial.clone(), data, lr=0.05, reg=reg, conventions=conventions)
        totals = _train_steps(backend, AGREEMENT_STEPS)
        results[engine] = ([t.detach() for t in backend.params.tensors()], totals)

    tol = TOLERANCE[dtype]
    reference_params, reference_totals = results["autograd"]
    for engine in ("native", "graph"):
        got_params, got_totals = results[engine]
        for index, (got, want) in enumerate(zip(got_params, reference_params, strict=True)):
            torch.testing.assert_close(got, want, rtol=0, atol=tol, msg=f"{engine} param {index}")
        assert len(got_totals) == len(reference_totals) == 4
        for got, want in zip(got_totals, reference_totals, strict=True):
            assert (got.samples, got.steps, got.correct) == (want.samples, want.steps, want.correct)
            assert got.loss_sum == pytest.approx(want.loss_sum, rel=tol)


# --- 5. Initialization and parameter count -------------------------------------------------------


def test_lab4_init_draws_weights_from_normal_times_0_1_and_zero_biases():
    params = init_params(784, [256], 10, conventions="lab4", seed=0)
    w1, w2 = params.weights
    assert w1.shape == (256, 784) and w2.shape == (10, 256)
    assert w1.std().item() == pytest.approx(0.1, rel=0.1)
    assert abs(w1.mean().item()) < 0.005
    assert w2.std().item() == pytest.approx(0.1, rel=0.1)
    assert all(torch.count_nonzero(b) == 0 for b in params.biases)
    assert [b.shape for b in params.biases] == [(256,), (10,)]


def test_standard_init_is_kaiming_for_hidden_layers_and_glorot_for_the_output():
    params = init_params(784, [256, 128], 10, conventions="standard", seed=0)
    w1, w2, w3 = params.weights
    assert w1.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.1)
    assert w2.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.1)
    assert w3.std().item() == pytest.approx(math.sqrt(2 / (128 + 10)), rel=0.15)
    assert all(torch.count_nonzero(b) == 0 for b in params.biases)


@pytest.mark.parametrize("conventions", CONVENTIONS)
def test_init_is_reproducible_from_the_seed(conventions):
    def draw(seed):
        return init_params(FEATURES, [16, 8], CLASSES, conventions=conventions, seed=seed).tensors()

    assert all(torch.equal(a, b) for a, b in zip(draw(7), draw(7), strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(draw(7)[0::2], draw(8)[0::2], strict=True))


def test_init_draws_the_same_numbers_in_every_dtype():
    single = init_params(FEATURES, [16], CLASSES, conventions="lab4", seed=1, dtype=torch.float32)
    double = init_params(FEATURES, [16], CLASSES, conventions="lab4", seed=1, dtype=F64)
    for a, b in zip(single.tensors(), double.tensors(), strict=True):
        assert a.dtype == torch.float32 and b.dtype == F64
        assert torch.equal(a, b.float())


@pytest.mark.parametrize(
    "features, hidden, classes, expected",
    [(784, [256], 10, 203_530), (784, [128], 10, 101_770), (3072, [512], 10, 1_578_506),
     (FEATURES, [16, 8], CLASSES, 20 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10)],
)
def test_count_parameters_is_weights_plus_biases(features, hidden, classes, expected):
    assert count_parameters(features, hidden, classes) == expected
    params = init_params(features, hidden, classes, conventions="lab4", seed=0)
    assert sum(t.numel() for t in params.tensors()) == expected


# --- 6. Divergence detection ---------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_first_nonfinite_step_finds_the_step_where_a_huge_lr_blows_up(engine):
    """lr = 1e30 in float32 overflows the weights on the first update, so the second batch's loss
    is NaN. (A merely large lr such as 1e6 does not: under lab4 the ReLUs die and the loss
    saturates at -log(1e-8) per sample, which is finite.)"""
    data = _synthetic_data()
    backend = _backend(engine, _params(dtype=torch.float32), data, lr=1e30)
    backend.start_epoch(0)
    backend.train_step(0)
    assert backend.first_nonfinite_step(1) is None
    for step in range(1, 6):
        backend.train_step(step)

    first = backend.first_nonfinite_step(6)
    assert first == 2
    per_sample = backend.log_likelihoods[:, 0]
    assert torch.isfinite(per_sample[: (first - 1) * BATCH]).all()
    assert not torch.isfinite(per_sample[(first - 1) * BATCH : first * BATCH]).all()
    assert not math.isfinite(backend.epoch_totals(6).loss_sum)


@pytest.mark.parametrize("bad_sample, expected_step", [(0, 1), (6, 1), (7, 2), (17, 3), (102, 15)])
def test_first_nonfinite_step_is_the_1_based_step_of_the_first_bad_sample(bad_sample, expected_step):
    backend = _backend("native", _params(), _synthetic_data())
    _run_epoch_steps(backend, 0, backend.steps_per_epoch)
    assert backend.first_nonfinite_step(backend.steps_per_epoch) is None
    backend.log_likelihoods[bad_sample, 0] = float("nan")
    backend.log_likelihoods[-1, 0] = float("-inf")  # a later one does not mask the first
    assert backend.first_nonfinite_step(backend.steps_per_epoch) == expected_step
    steps_before = expected_step - 1
    if steps_before and bad_sample != SAMPLES - 1:
        assert backend.first_nonfinite_step(steps_before) is None


# --- 7. Evaluation -------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_accuracy_is_the_percent_of_argmax_predictions_equal_to_the_labels(engine):
    g = _generator(8)
    samples = EVAL_CHUNK_ROWS + 123  # more than one evaluation chunk
    images = torch.randint(0, 256, (samples, FEATURES), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, CLASSES, (samples,), generator=g)
    params = _params(conventions="standard", seed=2)
    backend = _backend(engine, params, _synthetic_data())

    want = 100.0 * (_hand_logits(params, images).argmax(dim=1) == labels).sum().item() / samples
    assert backend.accuracy(images, labels) == pytest.approx(want, abs=1e-12)
    assert 0.0 < want < 100.0


def test_test_accuracy_scores_the_test_set():
    data = _synthetic_data()
    params = _params(seed=2)
    backend = _backend("native", params, data)
    hits = (_hand_logits(params, data.test_images).argmax(dim=1) == data.test_labels).sum().item()
    assert backend.test_accuracy() == pytest.approx(100.0 * hits / data.test_images.shape[0])


# --- 8. Devices ----------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("conventions", CONVENTIONS)
def test_native_backend_agrees_with_autograd_on_every_device(device, conventions):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    data = _synthetic_data(device)
    initial = _params((32,), conventions, dtype=torch.float32, device=device)
    results = []
    for engine in ("native", "autograd"):
        backend = _backend(engine, initial.clone(), data, lr=0.05, reg=0.001, conventions=conventions)
        totals = _train_steps(backend, 20)
        results.append((backend.params.tensors(), totals[-1], backend.test_accuracy()))
    (native, native_totals, native_acc), (oracle, oracle_totals, oracle_acc) = results
    for got, want in zip(native, oracle, strict=True):
        assert got.device.type == device
        torch.testing.assert_close(got.detach(), want.detach(), rtol=0, atol=1e-4)
    assert native_totals.correct == oracle_totals.correct
    assert native_totals.loss_sum == pytest.approx(oracle_totals.loss_sum, rel=1e-4)
    assert native_acc == oracle_acc
