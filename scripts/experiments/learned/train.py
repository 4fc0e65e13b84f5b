"""Train the small copy-detection descriptor on 2 CPU cores.

    train.py WORK MINUTES [OUT=WORK/model.pt]     (STORY=P: that share of the copies on a tall story canvas;
                                                  INIT=MODEL.pt: go on from it; LR: peak rate, 2e-3)

Asymmetric InfoNCE (temperature 0.05) between a work's plain view and a strongly attacked view of it, 128 works a
batch, plus SSCD's KoLeo term on the works' vectors (weight 0.05); AdamW 2e-3, cosine over the time budget. The
attacks are built per batch in tensors: one affine grid_sample (a crop of 35-100 % of the area with its aspect
changed, or the work framed smaller; rotation within 12 degrees; mirror), brightness, contrast, saturation, sepia-like
tints, gamma, overlays (captions, caption bars, stickers) from a bank of 400, down-up resampling, blur, noise. The
family of issue 8's attacks, not the dev corpus's list (its files are never read here)."""
import math, os, pickle, random, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from common import Net, SIDE, SRC_SIDE, plain_view, to_source

torch.set_num_threads(2)
WORK = sys.argv[1]
MINUTES = float(sys.argv[2])
OUT = sys.argv[3] if len(sys.argv) > 3 else f"{WORK}/model.pt"
B = 128
rng = np.random.default_rng(1)
imgs = pickle.load(open(f"{WORK}/train.pkl", "rb"))
srcs, aspects = zip(*(to_source(a) for a in imgs))
SRC = torch.from_numpy(np.stack(srcs)).permute(0, 3, 1, 2).contiguous()  # uint8 (N, 3, S, S)
ASP = torch.tensor(aspects, dtype=torch.float32)
N = len(SRC)
print(N, "training images", file=sys.stderr)

FONTS = [f for f in ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
                     "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"] if os.path.exists(f)]
WORDS = "me irl when you lol repost credit art daily mood vibes follow like share insta cool wow omg same tfw feed new".split()


def overlay_bank(n=400):
    """RGBA overlays at SIDE x SIDE: captions, watermarks, bars, stickers."""
    bank = []
    r = random.Random(3)
    for _ in range(n):
        im = Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))
        d = ImageDraw.Draw(im)
        kind = r.random()
        if kind < 0.55:  # caption text
            s = r.randint(7, 20)
            f = ImageFont.truetype(r.choice(FONTS), s) if FONTS else ImageFont.load_default()
            txt = " ".join(r.choice(WORDS) for _ in range(r.randint(1, 4)))
            col = r.choice([(255, 255, 255), (255, 255, 0), (0, 0, 0), (255, 0, 0)])
            a = r.choice([255, 255, 160])
            d.text((r.randint(0, SIDE // 2), r.randint(0, SIDE - s)), txt, font=f, fill=col + (a,),
                   stroke_width=r.choice([0, 1, 2]), stroke_fill=(0, 0, 0, a))
        elif kind < 0.75:  # a caption bar
            h = r.randint(8, 24); top = r.random() < 0.5
            y0 = 0 if top else SIDE - h
            d.rectangle((0, y0, SIDE, y0 + h), fill=(r.randint(0, 255),) * 3 + (255,))
            f = ImageFont.truetype(r.choice(FONTS), max(6, h - 6)) if FONTS else ImageFont.load_default()
            d.text((4, y0 + 2), " ".join(r.choice(WORDS) for _ in range(3)), font=f,
                   fill=(0, 0, 0, 255) if r.random() < 0.5 else (255, 255, 255, 255))
        else:  # stickers
            for _ in range(r.randint(1, 3)):
                x, y, s = r.randint(0, SIDE), r.randint(0, SIDE), r.randint(6, 22)
                col = tuple(r.randint(0, 255) for _ in range(3)) + (r.choice([255, 200]),)
                (d.ellipse if r.random() < 0.5 else d.rectangle)((x, y, x + s, y + s), fill=col)
        bank.append(np.asarray(im))
    return torch.from_numpy(np.stack(bank)).permute(0, 3, 1, 2).float() / 255


OVER = overlay_bank()


def attack(idx: torch.Tensor) -> torch.Tensor:
    n = len(idx)
    src = SRC[idx].float() / 255
    asp = ASP[idx]
    # crop: area share in [0.35, 1], aspect jitter; position uniform; sometimes zoom out (borders / frames)
    area = torch.empty(n).uniform_(0.35, 1.0)
    area = torch.where(torch.rand(n) < 0.25, torch.ones(n), area)
    ar = torch.exp(torch.empty(n).uniform_(-0.3, 0.3))
    sx = torch.sqrt(area * ar).clamp(max=1.0)
    sy = torch.sqrt(area / ar).clamp(max=1.0)
    zoom = torch.rand(n) < 0.2  # framed: the work smaller inside the view
    zf = torch.empty(n).uniform_(1.1, 1.7)
    sx = torch.where(zoom, zf * torch.exp(torch.empty(n).uniform_(-0.3, 0.3)), sx)
    sy = torch.where(zoom, zf, sy)
    story = torch.rand(n) < float(os.environ.get("STORY", "0"))  # a tall story / letterbox canvas around the work
    sx = torch.where(story, torch.empty(n).uniform_(1.0, 1.3), sx)
    sy = torch.where(story, torch.empty(n).uniform_(1.3, 3.5), sy)
    zoom = zoom | story
    cx = (torch.rand(n) * 2 - 1) * (1 - sx).clamp(min=0) + torch.where(zoom, (torch.rand(n) - 0.5) * 0.3, torch.zeros(n))
    cy = (torch.rand(n) * 2 - 1) * (1 - sy).clamp(min=0) + torch.where(zoom, (torch.rand(n) - 0.5) * 0.3, torch.zeros(n))
    ang = torch.where(torch.rand(n) < 0.35, torch.empty(n).uniform_(-12, 12), torch.zeros(n)) * math.pi / 180
    flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
    # output coords u in [-1, 1]^2 -> source coords: s = C + R(ang) * diag(sx, sy) u, rotation in pixel units
    # (aspect asp = w / h of the source): R_norm = diag(1/asp, 1) R diag(asp, 1)
    c, s = torch.cos(ang), torch.sin(ang)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = c * sx * flip
    theta[:, 0, 1] = -s * sy / asp
    theta[:, 1, 0] = s * sx * asp * flip
    theta[:, 1, 1] = c * sy
    theta[:, 0, 2] = cx
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, (n, 3, SIDE, SIDE), align_corners=False)
    x = F.grid_sample(torch.cat([src, torch.ones(n, 1, SRC_SIDE, SRC_SIDE)], 1), grid, mode="bilinear",
                      padding_mode="zeros", align_corners=False)
    x, m = x[:, :3], x[:, 3:]
    fill = torch.where(torch.rand(n, 1, 1, 1) < 0.5, torch.rand(n, 1, 1, 1).expand(n, 3, 1, 1), torch.rand(n, 3, 1, 1))
    x = x + (1 - m) * fill
    # colour
    bright = torch.where(torch.rand(n) < 0.5, torch.empty(n).uniform_(0.7, 1.3), torch.ones(n)).view(n, 1, 1, 1)
    contrast = torch.where(torch.rand(n) < 0.5, torch.empty(n).uniform_(0.6, 1.5), torch.ones(n)).view(n, 1, 1, 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean * bright
    grey = x.mean(1, keepdim=True)
    sat = torch.where(torch.rand(n) < 0.4, torch.empty(n).uniform_(0.0, 1.6), torch.ones(n)).view(n, 1, 1, 1)
    x = grey + (x - grey) * sat
    tint = torch.rand(n) < 0.1  # sepia-like: grey mapped between two colours
    lo, hi = torch.rand(n, 3, 1, 1) * 0.4, 0.6 + torch.rand(n, 3, 1, 1) * 0.4
    x = torch.where(tint.view(n, 1, 1, 1), lo + (hi - lo) * grey.clamp(0, 1), x)
    gamma = torch.where(torch.rand(n) < 0.3, torch.empty(n).uniform_(0.6, 1.6), torch.ones(n)).view(n, 1, 1, 1)
    x = x.clamp(0, 1).pow(gamma)
    # overlays
    ov = OVER[torch.randint(len(OVER), (n,))]
    use = (torch.rand(n) < 0.45).view(n, 1, 1, 1).float()
    a = ov[:, 3:] * use
    x = x * (1 - a) + ov[:, :3] * a
    # degradation: down-up resampling, blur, noise
    down = torch.rand(n) < 0.3
    if down.any():
        k = int(random.choice([24, 32, 48]))
        y = F.interpolate(F.interpolate(x[down], size=(k, k), mode="bilinear", antialias=True), size=(SIDE, SIDE),
                          mode="bilinear")
        x[down] = y
    blur = torch.rand(n) < 0.15
    if blur.any():
        kern = torch.tensor([1., 2., 1.]); kern = (kern[:, None] * kern[None]) / 16
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kern.expand(3, 1, 3, 3).contiguous(), groups=3)
    noise = torch.rand(n) < 0.2
    x = x + noise.view(n, 1, 1, 1) * torch.randn_like(x) * 0.03
    return x.clamp(0, 1)


net = Net()
if os.environ.get("INIT"):
    net.load_state_dict(torch.load(os.environ["INIT"]))
LR = float(os.environ.get("LR", "2e-3"))
print(sum(p.numel() for p in net.parameters()), "parameters", file=sys.stderr)
net.train()
opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
T = 0.05
t0 = time.time(); step = 0; budget = MINUTES * 60
while True:
    el = time.time() - t0
    if el > budget:
        break
    frac = el / budget
    for g in opt.param_groups:
        g["lr"] = LR * (min(1.0, step / 100) * 0.5 * (1 + math.cos(math.pi * frac)))
    idx = torch.from_numpy(rng.choice(N, B, replace=False))
    a, b = plain_view(SRC[idx]), attack(idx)
    z = net(torch.cat([a, b]))
    za, zb = z[:B], z[B:]
    logits = za @ zb.T / T
    lab = torch.arange(B)
    loss = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab)) / 2
    # KoLeo on the works' vectors: spread them out (SSCD)
    dist = torch.cdist(za, za) + torch.eye(B) * 10
    koleo = -torch.log(dist.min(1).values + 1e-6).mean()
    (loss + 0.05 * koleo).backward()
    opt.step(); opt.zero_grad()
    step += 1
    if step % 50 == 0:
        acc = (logits.argmax(1) == lab).float().mean().item()
        print(f"step {step} t={el:.0f}s loss {loss.item():.3f} koleo {koleo.item():.3f} acc {acc:.3f}", file=sys.stderr, flush=True)
        torch.save(net.state_dict(), OUT)
torch.save(net.state_dict(), OUT)
print("done", step, "steps", file=sys.stderr)
