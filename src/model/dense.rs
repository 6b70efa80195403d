//! Linear layers laid out once for the CPU forward pass.
//!
//! candle-nn's `Linear` multiplies by a transposed view of the `[out, in]`
//! weight, which gemm repacks on every call, and adds the bias (and the caller
//! the residual) in separate passes over fresh buffers. [`Dense`] keeps the
//! weight transposed to `[in, out]` and cut into panels of columns
//! ([`Packed`]) from load on, and starts the output as `residual + bias`, which
//! [`super::matmul`]'s kernel then accumulates `x W^T` into: one pass and one
//! buffer per layer. Several linears over the same input (BERT's query, key and
//! value) become one wider product ([`Dense::concat`]).
//!
//! Rounding: PyTorch computes `(x W^T + b) + residual`; this is
//! `(residual + b) + x W^T`, the same sum in another order (a few ulp, far
//! inside the 1e-5 the references are held to). The kernel splits the output,
//! not the sums, across threads, so the bits do not depend on the thread count.

use candle_core::{CpuStorage, Device, Tensor};
use candle_nn::Linear;

use super::matmul::Packed;

use crate::error::{Error, Result};

/// `y = x W^T + b (+ residual)` with `W^T` stored `[in, out]`.
pub struct Dense {
    /// `[in, out]`, in panels of columns.
    weight_t: Packed,
    /// `[out]` (zeros when the layer has none).
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    /// Lay out one linear layer.
    pub fn new(linear: &Linear) -> Result<Self> {
        Self::concat(&[linear])
    }

    /// Several linear layers over the same input, side by side: the output's columns are
    /// the first layer's outputs, then the second's, and so on.
    pub fn concat(linears: &[&Linear]) -> Result<Self> {
        let inputs = linears.first().map_or(Ok(0), |l| l.weight().dim(1))?;
        let mut weights = Vec::with_capacity(linears.len());
        let mut bias = Vec::new();
        for linear in linears {
            let (outputs, width) = linear.weight().dims2()?;
            if width != inputs {
                return Err(Error::Input(format!("linear layers of {width} and {inputs} inputs cannot be fused")));
            }
            weights.push(linear.weight().to_dtype(candle_core::DType::F32)?);
            match linear.bias() {
                Some(b) => bias.extend(b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?),
                None => bias.extend(std::iter::repeat_n(0f32, outputs)),
            }
        }
        let weight = Tensor::cat(&weights, 0)?;
        let outputs = weight.dim(0)?;
        let weight_t = with_f32(&weight.contiguous()?, |weight| Packed::from_linear(weight, inputs, outputs))?;
        Ok(Self { weight_t, bias, inputs, outputs })
    }

    /// `x W^T + b`, plus `residual` (`[rows, out]`) when given; `x` is `[rows, in]`.
    pub fn forward(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        self.forward_then(x, residual, |_| {})
    }

    /// [`Dense::forward`], with `finish` applied to the output in place before it becomes a
    /// tensor (an activation, without a second buffer).
    pub fn forward_then(&self, x: &Tensor, residual: Option<&Tensor>, finish: impl FnOnce(&mut [f32])) -> Result<Tensor> {
        let (rows, inputs) = x.dims2()?;
        if inputs != self.inputs {
            return Err(Error::Input(format!("a linear layer of {} inputs was given {inputs}", self.inputs)));
        }
        let outputs = self.outputs;
        let mut out: Vec<f32> = Vec::with_capacity(rows * outputs);
        match residual {
            Some(residual) => {
                let residual = residual.contiguous()?;
                with_f32(&residual, |residual| {
                    for row in residual.chunks_exact(outputs) {
                        out.extend(row.iter().zip(&self.bias).map(|(r, b)| r + b));
                    }
                })?;
            }
            None => {
                for _ in 0..rows {
                    out.extend_from_slice(&self.bias);
                }
            }
        }
        if out.len() != rows * outputs {
            return Err(Error::Input(format!("a residual of {} values does not fit [{rows}, {outputs}]", out.len())));
        }
        let x = x.contiguous()?;
        with_f32(&x, |x| super::matmul::multiply_add(rows, x, &self.weight_t, &mut out))?;
        finish(&mut out);
        Ok(Tensor::from_vec(out, (rows, outputs), &Device::Cpu)?)
    }

    /// The weight as candle stores a linear layer's, `[out, in]` (unpacked: a copy).
    pub fn weight(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.weight_t.unpack(), (self.inputs, self.outputs), &Device::Cpu)?.t()?)
    }
}

/// Run `f` on a contiguous f32 CPU tensor's numbers.
fn with_f32<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(CpuStorage::F32(values)), Some((start, end))) => Ok(f(&values[start..end])),
        _ => Err(candle_core::Error::Msg("dense layers run on contiguous f32 tensors on the CPU".into()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Module;

    /// Fixed pseudo-random values, roughly in [-1, 1].
    fn values(rows: usize, cols: usize, seed: u64) -> Tensor {
        let v: Vec<f32> = (0..(rows * cols) as u64).map(|i| (((i + 1) * 2654435761 + seed * 40503) % 1_000_003) as f32 / 500_000.0 - 1.0).collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    /// The fused layer is candle's Linear plus the residual, up to the order of the sum.
    #[test]
    fn dense_matches_linear_plus_residual() {
        let x = values(37, 48, 1);
        let q = Linear::new(values(24, 48, 2), Some(values(1, 24, 3).flatten_all().unwrap()));
        let k = Linear::new(values(16, 48, 4), None);
        let residual = values(37, 40, 5);
        let fused = Dense::concat(&[&q, &k]).unwrap().forward(&x, Some(&residual)).unwrap();
        let reference = (Tensor::cat(&[q.forward(&x).unwrap(), k.forward(&x).unwrap()], 1).unwrap() + &residual).unwrap();
        let (fused, reference): (Vec<f32>, Vec<f32>) = (fused.flatten_all().unwrap().to_vec1().unwrap(), reference.flatten_all().unwrap().to_vec1().unwrap());
        for (a, b) in fused.iter().zip(&reference) {
            // 48 products of values below 1: a few ulp of sums below ~20.
            assert!((a - b).abs() <= 1e-5, "{a} against {b}");
        }
        let weight = Dense::new(&q).unwrap().weight().unwrap();
        assert!(weight.flatten_all().unwrap().to_vec1::<f32>().unwrap() == q.weight().flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }

    /// gemm splits the output across threads, never a sum: any pool size gives the same bits.
    #[test]
    fn dense_is_bit_identical_across_thread_counts() {
        let x = values(300, 200, 6);
        let layer = Dense::new(&Linear::new(values(500, 200, 7), Some(values(1, 500, 8).flatten_all().unwrap()))).unwrap();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| layer.forward(&x, None).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap())
        };
        let one = on(1);
        for threads in [2, 3] {
            assert!(on(threads) == one, "{threads} threads differ from 1");
        }
    }
}
