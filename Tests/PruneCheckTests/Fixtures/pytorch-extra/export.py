import torch, torch.nn as nn, numpy as np, onnx
torch.manual_seed(0)
class Block(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.conv = nn.Conv2d(c, c, 3, padding=1, bias=False); s.bn = nn.BatchNorm2d(c)
    def forward(s, x): return torch.relu(x + s.bn(s.conv(x)))
class Net(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1); s.bn1 = nn.BatchNorm2d(8)
        s.block = Block(8)
        s.pool = nn.AvgPool2d(2)
        s.conv2 = nn.Conv2d(8, 12, 3, padding=1); s.bn2 = nn.BatchNorm2d(12)
        s.gap = nn.AdaptiveAvgPool2d(1)
        s.fc1 = nn.Linear(12, 32); s.drop = nn.Dropout(0.3); s.fc2 = nn.Linear(32, 16); s.fc3 = nn.Linear(16, 10)
    def forward(s, x):
        x = nn.functional.leaky_relu(s.bn1(s.stem(x)), 0.1)
        x = s.block(x)
        x = s.pool(x)
        x = nn.functional.gelu(s.bn2(s.conv2(x)))
        x = torch.flatten(s.gap(x), 1)
        x = torch.tanh(s.fc1(x)); x = s.drop(x)
        x = torch.sigmoid(s.fc2(x))
        return s.fc3(x)
m = Net()
# non-trivial BN statistics
with torch.no_grad():
    for bn in [m.bn1, m.block.bn, m.bn2]:
        bn.running_mean.uniform_(-0.5, 0.5); bn.running_var.uniform_(0.5, 2); bn.weight.uniform_(0.5, 1.5); bn.bias.uniform_(-0.3, 0.3)
m.eval()
d = np.load("/work/main/examples/data/mnist5k.npz")
x = torch.tensor(d["x_test"][:16].astype(np.float32) / 255)
with torch.no_grad(): y = m(x).numpy()
for opset in (13, 17):
    torch.onnx.export(m, x[:2], f"resnetish_opset{opset}.onnx", input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False)
    mm = onnx.load(f"resnetish_opset{opset}.onnx")
    print(opset, sorted({n.op_type for n in mm.graph.node}))
np.savez("resnetish.npz", input=x.numpy(), logits=y)
torch.onnx.export(m, x[:2], "resnetish_nofold_opset13.onnx", input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=13, dynamo=False, do_constant_folding=False)
print("nofold", sorted({n.op_type for n in onnx.load("resnetish_nofold_opset13.onnx").graph.node}))
