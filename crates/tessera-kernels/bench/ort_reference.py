#!/usr/bin/env python3
"""onnxruntime reference timings for the CPU backend's benchmark
(examples/zoo_latency.rs): VGG-16, ResNet-50 v1.5 and MobileNetV2 built
layer for layer with onnx.helper (BatchNorm folded into conv biases, as
Tessera's optimiser does; random weights: timing only), run single-image.

Usage: MODELS=resnet50,vgg16,mobilenetv2 python3 ort_reference.py THREADS [RUNS]
Prints the median and minimum latency of RUNS runs (default 10) per model.
"""
import numpy as np, onnx, onnxruntime as ort, time, sys
from onnx import helper, TensorProto, numpy_helper
rng=np.random.default_rng(0)
class B:
    def __init__(s): s.nodes=[]; s.inits=[]; s.n=0
    def name(s,p): s.n+=1; return f"{p}{s.n}"
    def init(s,arr): nm=s.name('w'); s.inits.append(numpy_helper.from_array(arr.astype(np.float32),nm)); return nm
    def conv(s,x,ci,co,k,st=1,p=None,g=1,relu=True):
        p=k//2 if p is None else p
        w=s.init(rng.uniform(-1,1,(co,ci//g,k,k))*np.sqrt(6/(ci//g*k*k))); b=s.init(rng.uniform(-.1,.1,co))
        y=s.name('c'); s.nodes.append(helper.make_node('Conv',[x,w,b],[y],kernel_shape=[k,k],strides=[st,st],pads=[p]*4,group=g))
        if relu: r=s.name('r'); s.nodes.append(helper.make_node('Relu',[y],[r])); return r
        return y
    def op(s,t,ins,**kw): y=s.name(t); s.nodes.append(helper.make_node(t,ins,[y],**kw)); return y
    def dense(s,x,i,o,relu=True):
        w=s.init(rng.uniform(-1,1,(o,i))*np.sqrt(6/i)); b=s.init(rng.uniform(-.1,.1,o))
        y=s.op('Gemm',[x,w,b],transB=1)
        return s.op('Relu',[y]) if relu else y
    def model(s,out,shape):
        g=helper.make_graph(s.nodes,'m',[helper.make_tensor_value_info('x',TensorProto.FLOAT,shape)],[helper.make_tensor_value_info(out,TensorProto.FLOAT,None)],s.inits)
        return helper.make_model(g,opset_imports=[helper.make_opsetid('',13)])
def vgg16():
    b=B(); x='x'; ci=3
    for w,n in [(64,2),(128,2),(256,3),(512,3),(512,3)]:
        for i in range(n): x=b.conv(x,ci,w,3); ci=w
        x=b.op('MaxPool',[x],kernel_shape=[2,2],strides=[2,2])
    x=b.op('Flatten',[x]); x=b.dense(x,25088,4096); x=b.dense(x,4096,4096); x=b.dense(x,4096,1000,False)
    return b.model(x,[1,3,224,224])
def resnet50():
    b=B(); x=b.conv('x',3,64,7,2,3); x=b.op('MaxPool',[x],kernel_shape=[3,3],strides=[2,2],pads=[1,1,1,1]); ci=64
    for width,n,st in [(64,3,1),(128,4,2),(256,6,2),(512,3,2)]:
        for i in range(n):
            s=st if i==0 else 1
            y=b.conv(x,ci,width,1); y=b.conv(y,width,width,3,s); y=b.conv(y,width,width*4,1,relu=False)
            sc=b.conv(x,ci,width*4,1,s,0,relu=False) if i==0 else x
            x=b.op('Relu',[b.op('Add',[y,sc])]); ci=width*4
    x=b.op('GlobalAveragePool',[x]); x=b.op('Flatten',[x]); x=b.dense(x,2048,1000,False)
    return b.model(x,[1,3,224,224])
def mobilenetv2():
    b=B(); ci=32
    def clip(y): return b.op('Clip',[y,b.init(np.array(0.0)),b.init(np.array(6.0))])
    x=clip(b.conv('x',3,32,3,2,1,relu=False))
    cfg=[(1,16,1,1),(6,24,2,2),(6,32,3,2),(6,64,4,2),(6,96,3,1),(6,160,3,2),(6,320,1,1)]
    for t,c,n,s in cfg:
        for i in range(n):
            st=s if i==0 else 1; hid=ci*t; y=x
            if t!=1: y=clip(b.conv(y,ci,hid,1,relu=False))
            y=clip(b.conv(y,hid,hid,3,st,1,g=hid,relu=False))
            y=b.conv(y,hid,c,1,relu=False)
            if st==1 and ci==c: y=b.op('Add',[y,x])
            x=y; ci=c
    x=clip(b.conv(x,ci,1280,1,relu=False)); x=b.op('GlobalAveragePool',[x]); x=b.op('Flatten',[x]); x=b.dense(x,1280,1000,False)
    return b.model(x,[1,3,224,224])
def bench(m,threads,runs):
    so=ort.SessionOptions(); so.intra_op_num_threads=threads; so.inter_op_num_threads=1; so.log_severity_level=3
    s=ort.InferenceSession(m.SerializeToString(),so,providers=['CPUExecutionProvider'])
    x=np.full([1,3,224,224],0.5,np.float32)
    for _ in range(2): s.run(None,{'x':x})
    t=[]
    for _ in range(runs):
        t0=time.perf_counter(); s.run(None,{'x':x}); t.append((time.perf_counter()-t0)*1e3)
    t.sort(); return t[len(t)//2], t[0]
threads=int(sys.argv[1]) if len(sys.argv)>1 else 1
runs=int(sys.argv[2]) if len(sys.argv)>2 else 10
import os
models=os.environ.get('MODELS','resnet50,vgg16').split(',')
for name,f in [(n,globals()[n]) for n in models]:
    med,mn=bench(f(),threads,runs)
    print(f"ORT {name} threads={threads}: median {med:.1f} ms min {mn:.1f} ms")
