"""A small end-to-end run: a peephole LSTM learns to forecast a noisy sine wave one step ahead."""
import math

import torch

import lstmkit.nn as nn


class Forecaster(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True, peephole=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x, lengths=None):
        out, _ = self.lstm(x, lengths=lengths)  # (B, T, H)
        return self.head(out)  # (B, T, 1)


def main():
    torch.manual_seed(0)
    t = torch.arange(0, 400, dtype=torch.float32)
    series = torch.sin(t / 6) + 0.05 * torch.randn_like(t)
    windows = series.unfold(0, 31, 5)  # (N, 31)
    x, y = windows[:, :-1, None], windows[:, 1:, None]
    model = Forecaster()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(60):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if epoch % 20 == 0 or epoch == 59:
            print(f"epoch {epoch:3d}  mse {loss.item():.4f}")
    naive = nn.functional.mse_loss(x, y).item()
    print(f"one-step MSE {loss.item():.4f} vs naive (repeat last value) {naive:.4f}")
    assert math.isfinite(loss.item())


if __name__ == "__main__":
    main()
