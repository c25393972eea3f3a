import torch, time, statistics, sys
import torch.nn.functional as F
from prunehess.models import build_model
from prunehess import HessianOperator
dev = torch.device("cuda")
def T(fn, n=15):
    fn(); torch.cuda.synchronize(); ts=[]
    for _ in range(n):
        torch.cuda.synchronize(); t=time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append(time.perf_counter()-t)
    return statistics.median(ts)*1000
torch.manual_seed(0)
m = build_model("resnet20", num_classes=10, input_shape=(3,32,32)).to(dev).eval()
x = torch.randn(200,3,32,32,device=dev); y=torch.randint(0,10,(200,),device=dev)
params=list(m.parameters())
g=T(lambda: torch.autograd.grad(F.cross_entropy(m(x),y), params))
print(f"grad {g:.2f} ms")
for cg in (False, True):
    H=HessianOperator(m,[(x,y)],masks=None,cuda_graphs=cg)
    v=torch.randn(H.size,device=dev)
    h=T(lambda: H@v); print(f"full cuda_graphs={cg}: {h:.2f} ms ({h/g:.2f}x grad)")
    names=H.names
    for nm in (names[0], names[len(names)//2], names[-3]):
        B=H.restrict([nm]); u=torch.randn(B.size,device=dev)
        print(f"  block {nm} ({B.size}): {T(lambda: B@u):.2f} ms")
    torch.cuda.synchronize(); t=time.perf_counter()
    for nm in names[::4]:
        B=H.restrict([nm]); B.summary(k=1, tol=1e-4)
    torch.cuda.synchronize(); print(f"  per-layer summary over {len(names[::4])} blocks: {time.perf_counter()-t:.2f} s; peak {torch.cuda.max_memory_allocated()/2**20:.0f} MiB")
    H.release(); torch.cuda.reset_peak_memory_stats()
H=HessianOperator(m,[(x,y)],masks=None); print("tune", {k: round(v*1000,2) for k,v in H.tune().items()}, H.strategy, H.cuda_graphs, H.batched_strategy)
