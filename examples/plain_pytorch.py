"""CS-KD in a plain PyTorch loop: a DataLoader over your own Dataset, cskd's class-wise batch
sampler and loss, nothing else of cskd.

Trains a small CNN on scikit-learn's 8x8 digits (shipped with scikit-learn, no download) with
CS-KD (T = 4, λ = 1) and prints the test accuracy. `--epochs` and `--seed` as you like; it takes
a few seconds on a CPU with the defaults.

    python examples/plain_pytorch.py --epochs 5
"""

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

import cskd

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
torch.manual_seed(args.seed)

# Any map-style Dataset works; here (image, label) pairs of 1x8x8 float images.
digits = load_digits()
x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
y = torch.tensor(digits.target)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
train_set = TensorDataset(x_train, y_train)

# Each batch: 64 anchors, then a same-class partner for each (128 samples).
sampler = cskd.ClassWiseBatchSampler(y_train, batch_size=64, seed=args.seed)
loader = DataLoader(train_set, batch_sampler=sampler)

model = cskd.build_model("small", num_classes=10, in_channels=1)
criterion = cskd.CSKDLoss(temperature=4.0, lambda_cls=1.0)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

for epoch in range(args.epochs):
    sampler.set_epoch(epoch)  # new anchors and partners every epoch, reproducible per (seed, epoch)
    model.train()
    for batch in loader:
        (images, labels), (partner_images, _) = cskd.split_pairs(batch)
        logits = model(images)
        with torch.no_grad():  # the partner's prediction is a fixed target (the paper's θ̃)
            partner_logits = model(partner_images)
        loss = criterion(logits, partner_logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

model.eval()
with torch.no_grad():
    accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
print(f"CS-KD, {args.epochs} epochs: test accuracy {100 * accuracy:.2f}% on {len(y_test)} digits")
