"""CS-KD in a PyTorch Lightning module: the same two pieces of cskd (the class-wise batch sampler
and the loss) inside a LightningModule. Lightning is an optional extra (`pip install lightning`).

Trains a small CNN on scikit-learn's 8x8 digits (no download) and prints the test accuracy.

    python examples/lightning_module.py --epochs 5

Lightning calls `set_epoch` on a DataLoader's sampler, not on its batch sampler, so the module
does it in `on_train_epoch_start`: the pairs change per epoch as in cskd's own trainer. Under DDP
keep `use_distributed_sampler=False`:
ClassWiseBatchSampler already takes each rank's share of every global batch (it reads the rank
and world size from torch.distributed), and Lightning must not wrap it.
"""

import argparse

import lightning as L
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

import cskd


class CSKDModule(L.LightningModule):
    def __init__(self, num_classes: int = 10, temperature: float = 4.0, lambda_cls: float = 1.0):
        super().__init__()
        self.model = cskd.build_model("small", num_classes=num_classes, in_channels=1)
        self.criterion = cskd.CSKDLoss(temperature=temperature, lambda_cls=lambda_cls)

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        (images, labels), (partner_images, _) = cskd.split_pairs(batch)
        logits = self(images)
        with torch.no_grad():  # the partner's prediction is a fixed target
            partner_logits = self(partner_images)
        loss = self.criterion(logits, partner_logits, labels)
        self.log("train_loss", loss)
        return loss

    def on_train_epoch_start(self):
        batch_sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        if isinstance(batch_sampler, cskd.ClassWiseBatchSampler):
            batch_sampler.set_epoch(self.current_epoch)  # new anchors and partners every epoch

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    L.seed_everything(args.seed, verbose=False)

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    sampler = cskd.ClassWiseBatchSampler(y_train, batch_size=64, seed=args.seed)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_sampler=sampler)

    module = CSKDModule()
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, use_distributed_sampler=False,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, loader)
    module.eval()
    with torch.no_grad():
        accuracy = (module(x_test).argmax(1) == y_test).float().mean().item()
    print(f"CS-KD (Lightning), {args.epochs} epochs: test accuracy {100 * accuracy:.2f}% on {len(y_test)} digits")


if __name__ == "__main__":
    main()
