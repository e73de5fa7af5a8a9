"""A PyTorch MLP for Fashion-MNIST written the usual way: an nn.Module, a torch.optim optimizer
(SGD or Adam, a field of the model file), a DataLoader over a TensorDataset reshuffled every epoch,
and the validation accuracy reported after each epoch.

Run it, tune it:

    tuner-tui --preset torch_mlp                                  # the app
    tuner-tui --preset torch_mlp --no-ui --set optimizer=sgd --set lr=0.1
    tuner-tui sweep torch_mlp_search                              # a sweep over optimizer, lr, hidden, batch_size
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset, random_split

from tuner_tui import Run

VALIDATION_SHARE = 0.1  # held out of training when tuner-tui gives no validation rows (a run of its own)
EVAL_BATCH = 1024


class MLP(nn.Module):
    def __init__(self, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def make_optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.SGD(model.parameters(), lr=lr)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in percent) over `loader`."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for inputs, targets in loader:
        x, y = inputs.to(device), targets.to(device)
        logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
        count += len(y)
    return loss_sum / count, 100.0 * correct / count


def train(config: dict, run: Run) -> dict:
    torch.manual_seed(config["seed"])
    device = torch.device(run.device)
    data = run.load_dataset("fmnist")
    train_set: TensorDataset | Subset = TensorDataset(data.train_x, data.train_y)
    val_set: TensorDataset | Subset
    if len(data.val_y):  # a sweep's held-out rows
        val_set = TensorDataset(data.val_x, data.val_y)
    else:
        split = torch.Generator().manual_seed(config["seed"])
        train_set, val_set = random_split(train_set, [1 - VALIDATION_SHARE, VALIDATION_SHARE], generator=split)
    shuffle = torch.Generator().manual_seed(config["seed"])
    train_loader = DataLoader(train_set, batch_size=config["batch_size"], shuffle=True, generator=shuffle)
    val_loader = DataLoader(val_set, batch_size=EVAL_BATCH)
    test_loader = DataLoader(TensorDataset(data.test_x, data.test_y), batch_size=EVAL_BATCH)

    model = MLP(data.train_x.shape[1], config["hidden"], data.classes).to(device)
    optimizer = make_optimizer(config["optimizer"], model, config["lr"])
    loss_fn = nn.CrossEntropyLoss()
    parameters = sum(p.numel() for p in model.parameters())
    run.log(f"MLP {data.train_x.shape[1]}->{config['hidden']}->{data.classes} ({parameters} parameters), "
            f"{config['optimizer']} on {device}, {len(train_set)} training and {len(val_set)} validation rows")

    for epoch in range(1, config["epochs"] + 1):
        model.train()
        loss_sum, count = 0.0, 0
        for inputs, targets in train_loader:
            x, y = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            count += len(y)
        val_loss, val_accuracy = evaluate(model, val_loader, device)
        run.report(epoch, val_accuracy=val_accuracy, val_loss=val_loss, train_loss=loss_sum / count)
    _, test_accuracy = evaluate(model, test_loader, device)
    return {"test_accuracy": test_accuracy}
