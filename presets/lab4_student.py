"""Lab 4's training loop as a student writes it: layer classes of one's own, each with a forward and a
backward written out by hand on torch tensors (no torch.autograd, nothing of tuner-tui's engine).

It keeps the lab's conventions: weights drawn from a standard normal times 0.1 (biases zero), the
training set walked in file order in batches [i, i+B), the loss of a batch its summed
cross-entropy divided by the number of classes, L2 regularization of the weights, plain SGD; the
reported training loss and accuracy are the last epoch's, counted batch by batch during it.

Run it, tune it:

    tuner-tui --preset lab4_student                          # the app
    tuner-tui --preset lab4_student --no-ui --set epochs=2   # headless
    tuner-tui sweep lab4_student_search                      # a sweep over lr, hidden, batch_size, reg
"""

from __future__ import annotations

import torch

from tuner_tui import Run

LOG_EPSILON = 1e-8  # the lab's log(p + 1e-8)
INIT_SCALE = 0.1  # the lab's W = 0.1 * randn


class Linear:
    """o = x W^T + b for a batch x (B x in); W is out x in, as in the lab."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight, self.bias = weight, bias
        self.grad_weight = torch.zeros_like(weight)
        self.grad_bias = torch.zeros_like(bias)
        self.x = weight.new_empty(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.x = x
        return x @ self.weight.T + self.bias

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        self.grad_weight = grad.T @ self.x
        self.grad_bias = grad.sum(dim=0)
        return grad @ self.weight

    def step(self, lr: float) -> None:
        self.weight -= lr * self.grad_weight
        self.bias -= lr * self.grad_bias


class ReLU:
    """max(0, z), elementwise."""

    def __init__(self) -> None:
        self.z = torch.empty(0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.z = z
        return torch.relu(z)

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * (self.z > 0)


class SoftmaxCrossEntropy:
    """Softmax over the classes, then the lab's loss: for each class c, k_c = sum over the batch of
    -y_c log(p_c + 1e-8); L = the mean of the k_c (the batch's summed cross-entropy / classes)."""

    def __init__(self) -> None:
        self.p = torch.empty(0)
        self.y = torch.empty(0)

    def forward(self, o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shifted = o - o.max(dim=1, keepdim=True).values  # the column max first, for stability
        e = torch.exp(shifted)
        self.p, self.y = e / e.sum(dim=1, keepdim=True), y
        k = (-y * torch.log(self.p + LOG_EPSILON)).sum(dim=0)  # one k_c per class
        return k.mean()

    def backward(self) -> torch.Tensor:
        """dL/do. With the 1e-8 kept exactly: q = y p / (p + eps), dL/do = (p sum(q) - q) / classes
        (without the epsilon, q = y and this is the familiar (p - y) / classes)."""
        q = self.y * self.p / (self.p + LOG_EPSILON)
        return (self.p * q.sum(dim=1, keepdim=True) - q) / self.p.shape[1]


class L2Regularization:
    """s = (lambda / 2) (sum W1^2 + sum W2^2): the weights only, not the biases."""

    def __init__(self, strength: float, *layers: Linear) -> None:
        self.strength, self.layers = strength, layers

    def forward(self) -> float:
        """s itself (the lab adds it to L for the objective J; the reported loss is L alone)."""
        return 0.5 * self.strength * sum(float((layer.weight**2).sum()) for layer in self.layers)

    def backward(self) -> None:
        """Add ds/dW = lambda W to each weight's gradient, so that J = L + s drives the step."""
        for layer in self.layers:
            layer.grad_weight += self.strength * layer.weight


class Network:
    """Linear -> ReLU -> Linear -> SoftmaxCrossEntropy, + L2Regularization: forward, backward, step."""

    def __init__(self, features: int, hidden: int, classes: int, reg: float, seed: int, device: str) -> None:
        generator = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same numbers on every device

        def weight(rows: int, columns: int) -> torch.Tensor:
            w = torch.randn(rows, columns, generator=generator, dtype=torch.float64) * INIT_SCALE
            return w.to(device=device, dtype=torch.float32)

        self.layer1 = Linear(weight(hidden, features), torch.zeros(hidden, device=device))
        self.relu = ReLU()
        self.layer2 = Linear(weight(classes, hidden), torch.zeros(classes, device=device))
        self.loss = SoftmaxCrossEntropy()
        self.regularization = L2Regularization(reg, self.layer1, self.layer2)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2.forward(self.relu.forward(self.layer1.forward(x)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's logits and its loss L (without the regularization term, as the lab reports it)."""
        o = self.logits(x)
        return o, self.loss.forward(o, y)

    def backward(self) -> None:
        grad = self.loss.backward()
        grad = self.layer2.backward(grad)
        grad = self.relu.backward(grad)
        self.layer1.backward(grad)
        self.regularization.backward()

    def step(self, lr: float) -> None:
        self.layer1.step(lr)
        self.layer2.step(lr)

    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """Percent of `x` classified as `labels`, in one forward pass."""
        return 100.0 * (self.logits(x).argmax(dim=1) == labels).sum().item() / len(labels)


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.eye(classes, device=labels.device)[labels]


def train(config: dict, run: Run) -> dict:
    device = run.device
    data = run.load_dataset("fmnist")  # pixels in [0, 1], flattened; no mean/std normalization
    x, labels = data.train_x.to(device), data.train_y.to(device)  # the whole dataset on the device
    y = one_hot(labels, data.classes)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    n, batch_size, lr = len(labels), config["batch_size"], config["lr"]
    net = Network(x.shape[1], config["hidden"], data.classes, config["reg"], config["seed"], device)
    run.log(f"{x.shape[1]}->{config['hidden']}->{data.classes} on {device}: {n} training rows, batch {batch_size}")

    for epoch in range(1, config["epochs"] + 1):
        loss_sum, correct = 0.0, 0
        for i in range(0, n, batch_size):  # no shuffling: the file's order, the last batch partial
            o, loss = net.forward(x[i : i + batch_size], y[i : i + batch_size])
            correct += int((o.argmax(dim=1) == labels[i : i + batch_size]).sum())  # before this batch's update
            loss_sum += float(loss)
            net.backward()
            net.step(lr)
        metrics = {"train_loss": loss_sum / max(1, n // batch_size), "train_accuracy": 100.0 * correct / n}
        run.log(f"epoch {epoch}: loss L {metrics['train_loss']:.4f}, penalty s {net.regularization.forward():.4f} now")
        if len(val_y):  # a sweep's held-out rows: what it tunes on
            metrics["val_accuracy"] = net.accuracy(val_x, val_y)
        else:  # a run of its own: the test set after each epoch, as the lab's built-in runs report it
            metrics["test_accuracy"] = net.accuracy(test_x, test_y)
        run.report(epoch, **metrics)  # raises tuner_tui.Stop when the run must end
    return {"test_accuracy": net.accuracy(test_x, test_y)}
