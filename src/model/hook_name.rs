//! Typed hook names: every point where a forward pass exposes an activation, spelled once.
//!
//! The canonical spelling is the reference's (`2.attn.v`, `0.mlp.post_act`, `final_resid`), which recorded
//! activations, interventions, node ids and files all use. A model family with other native names (GPT-2's
//! TransformerLens names such as `blocks.0.hook_resid_pre`) maps its hook points onto these sites, and
//! [`HookName::transformer_lens`] gives that spelling for display and import; new sites are new variants here, so
//! every `match` on them is checked by the compiler.

use std::fmt;
use std::str::FromStr;

/// A hook point inside a transformer block, in forward order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum HookSite {
    /// The residual stream entering the block.
    ResidIn,
    /// The attention sublayer's input after its norm (and AbsTopK).
    AttnActIn,
    /// The keys, all heads side by side.
    AttnK,
    /// The queries, all heads side by side.
    AttnQ,
    /// The values, all heads side by side.
    AttnV,
    /// Every head's attention weights, (B, n_head, T, T): recorded on request
    /// ([`crate::model::Hooks::set_record_patterns`]), never intervened on, and not among [`HookSite::ALL`].
    AttnPattern,
    /// The attention output before the output projection, all heads side by side.
    AttnY,
    /// What the attention sublayer adds to the residual stream.
    AttnResidDelta,
    /// The residual stream between the two sublayers.
    ResidMid,
    /// The MLP sublayer's input after its norm (and AbsTopK).
    MlpActIn,
    /// The MLP's neurons after the activation function.
    MlpPostAct,
    /// What the MLP sublayer adds to the residual stream.
    MlpResidDelta,
}

impl HookSite {
    /// Every block site with (B, T, channels) activations, in recording (forward) order.
    pub const ALL: [HookSite; 11] = [
        HookSite::ResidIn,
        HookSite::AttnActIn,
        HookSite::AttnK,
        HookSite::AttnQ,
        HookSite::AttnV,
        HookSite::AttnY,
        HookSite::AttnResidDelta,
        HookSite::ResidMid,
        HookSite::MlpActIn,
        HookSite::MlpPostAct,
        HookSite::MlpResidDelta,
    ];

    /// The block-relative name, e.g. `attn.q`.
    pub const fn name(self) -> &'static str {
        match self {
            HookSite::ResidIn => "resid_in",
            HookSite::AttnActIn => "attn.act_in",
            HookSite::AttnK => "attn.k",
            HookSite::AttnQ => "attn.q",
            HookSite::AttnV => "attn.v",
            HookSite::AttnPattern => "attn.pattern",
            HookSite::AttnY => "attn.y",
            HookSite::AttnResidDelta => "attn.resid_delta",
            HookSite::ResidMid => "resid_mid",
            HookSite::MlpActIn => "mlp.act_in",
            HookSite::MlpPostAct => "mlp.post_act",
            HookSite::MlpResidDelta => "mlp.resid_delta",
        }
    }

    /// TransformerLens's block-relative name of the same point (its `hook_*` modules), e.g. `attn.hook_q`.
    /// The `act_in` sites are the normalised sublayer inputs, TransformerLens's `ln1`/`ln2.hook_normalized`;
    /// TransformerLens records those before the LayerNorm's gain and bias, which its default processing folds
    /// into the next weights, so the two agree on a folded model and differ by the affine map on a raw one.
    pub const fn transformer_lens_name(self) -> &'static str {
        match self {
            HookSite::ResidIn => "hook_resid_pre",
            HookSite::AttnActIn => "ln1.hook_normalized",
            HookSite::AttnK => "attn.hook_k",
            HookSite::AttnQ => "attn.hook_q",
            HookSite::AttnV => "attn.hook_v",
            HookSite::AttnPattern => "attn.hook_pattern",
            HookSite::AttnY => "attn.hook_z",
            HookSite::AttnResidDelta => "hook_attn_out",
            HookSite::ResidMid => "hook_resid_mid",
            HookSite::MlpActIn => "ln2.hook_normalized",
            HookSite::MlpPostAct => "mlp.hook_post",
            HookSite::MlpResidDelta => "hook_mlp_out",
        }
    }

    /// The number of channels at this site in a model of config `cfg`; None for the attention pattern, which
    /// is (n_head, T, T) per sequence rather than channels per token.
    pub fn width(self, cfg: &super::Config) -> Option<usize> {
        Some(match self {
            HookSite::ResidIn | HookSite::AttnResidDelta | HookSite::ResidMid | HookSite::MlpResidDelta => cfg.d_model,
            HookSite::AttnActIn | HookSite::MlpActIn => cfg.d_model_in(),
            HookSite::AttnK | HookSite::AttnQ | HookSite::AttnV | HookSite::AttnY => cfg.attn_width(),
            HookSite::MlpPostAct => cfg.d_mlp,
            HookSite::AttnPattern => return None,
        })
    }

    /// The site of a block-relative name such as `attn.q`.
    pub fn from_name(name: &str) -> Option<HookSite> {
        HookSite::ALL
            .into_iter()
            .chain([HookSite::AttnPattern])
            .find(|s| s.name() == name)
    }
}

/// A hook point of a model: a site of one block, or the residual stream after the last block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookName {
    /// `site` of block `layer`, e.g. `2.attn.v`.
    Block {
        /// The block's index, from 0.
        layer: usize,
        /// The point inside the block.
        site: HookSite,
    },
    /// The residual stream after the last block, before the final norm: `final_resid`.
    FinalResid,
}

/// The canonical spelling of [`HookName::FinalResid`].
pub const FINAL_RESID: &str = "final_resid";

impl HookName {
    /// `site` of block `layer`.
    pub const fn block(layer: usize, site: HookSite) -> Self {
        HookName::Block { layer, site }
    }

    /// The block this hook belongs to (None for `final_resid`).
    pub const fn layer(self) -> Option<usize> {
        match self {
            HookName::Block { layer, .. } => Some(layer),
            HookName::FinalResid => None,
        }
    }

    /// TransformerLens's full name of this hook in a model of `n_layer` blocks, e.g. `blocks.0.hook_resid_pre`;
    /// `final_resid` is the last block's `hook_resid_post`.
    pub fn transformer_lens(self, n_layer: usize) -> String {
        match self {
            HookName::Block { layer, site } => format!("blocks.{layer}.{}", site.transformer_lens_name()),
            HookName::FinalResid => format!("blocks.{}.hook_resid_post", n_layer.saturating_sub(1)),
        }
    }

    /// Reads a hook name in our spelling (`2.attn.v`) or TransformerLens's (`blocks.2.attn.hook_v`,
    /// `blocks.0.ln1.hook_normalized`, ...) for a model of `n_layer` blocks. TransformerLens's
    /// `blocks.L.hook_resid_post` is block L+1's `resid_in`, or `final_resid` after the last block. The layer is
    /// not checked against `n_layer` otherwise.
    pub fn parse_any(s: &str, n_layer: usize) -> Result<HookName, HookNameError> {
        if let Ok(h) = s.parse::<HookName>() {
            return Ok(h);
        }
        let err = || HookNameError { input: s.to_string() };
        let rest = s.strip_prefix("blocks.").ok_or_else(err)?;
        let (layer, site) = rest.split_once('.').ok_or_else(err)?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let layer: usize = layer.parse().map_err(|_| err())?;
        if site == "hook_resid_post" {
            return match layer + 1 {
                next if next < n_layer => Ok(HookName::block(next, HookSite::ResidIn)),
                next if next == n_layer => Ok(HookName::FinalResid),
                _ => Err(err()),
            };
        }
        HookSite::ALL
            .into_iter()
            .chain([HookSite::AttnPattern])
            .find(|x| x.transformer_lens_name() == site)
            .map(|site| HookName::block(layer, site))
            .ok_or_else(err)
    }

    /// Whether TransformerLens spells this hook per head (`[batch, pos, head, d_head]`): q, k, v and z, whose
    /// channel `[h:c]` is head h's channel c.
    pub fn is_per_head(self) -> bool {
        matches!(
            self,
            HookName::Block {
                site: HookSite::AttnQ | HookSite::AttnK | HookSite::AttnV | HookSite::AttnY,
                ..
            }
        )
    }

    /// The number of channels at this hook in a model of config `cfg` (None for attention patterns).
    pub fn width(self, cfg: &super::Config) -> Option<usize> {
        match self {
            HookName::Block { site, .. } => site.width(cfg),
            HookName::FinalResid => Some(cfg.d_model),
        }
    }

    /// Every activation hook point of a model with `n_layer` blocks, in recording order (attention patterns are
    /// not among them: see [`HookSite::AttnPattern`]).
    pub fn all(n_layer: usize) -> impl Iterator<Item = HookName> {
        (0..n_layer)
            .flat_map(|layer| HookSite::ALL.into_iter().map(move |site| HookName::block(layer, site)))
            .chain(std::iter::once(HookName::FinalResid))
    }
}

impl fmt::Display for HookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookName::Block { layer, site } => write!(f, "{layer}.{}", site.name()),
            HookName::FinalResid => f.write_str(FINAL_RESID),
        }
    }
}

/// Why a string is not a hook name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a hook name (expected e.g. `0.resid_in`, `2.attn.v`, `1.mlp.post_act` or `final_resid`)")]
pub struct HookNameError {
    /// The rejected text.
    pub input: String,
}

impl FromStr for HookName {
    type Err = HookNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || HookNameError { input: s.to_string() };
        if s == FINAL_RESID {
            return Ok(HookName::FinalResid);
        }
        let (layer, site) = s.split_once('.').ok_or_else(err)?;
        // `parse` alone would accept `+1`: the canonical spelling has digits only.
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let layer = layer.parse().map_err(|_| err())?;
        let site = HookSite::from_name(site).ok_or_else(err)?;
        Ok(HookName::block(layer, site))
    }
}

impl serde::Serialize for HookName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HookName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hook_round_trips_through_its_name() {
        let all: Vec<HookName> = HookName::all(3).collect();
        assert_eq!(all.len(), 3 * HookSite::ALL.len() + 1);
        for h in all {
            assert_eq!(h.to_string().parse::<HookName>(), Ok(h));
        }
        assert_eq!(HookName::block(2, HookSite::AttnV).to_string(), "2.attn.v");
        assert_eq!(HookName::FinalResid.to_string(), "final_resid");
        let pattern = HookName::block(1, HookSite::AttnPattern);
        assert_eq!(pattern.to_string().parse::<HookName>(), Ok(pattern));
        assert_eq!(pattern.to_string(), "1.attn.pattern");
    }

    #[test]
    fn rejects_what_is_not_a_hook() {
        for s in [
            "",
            "attn.v",
            "x.attn.v",
            "+1.attn.v",
            "2.attn.w",
            "2.final_resid",
            "2.attn.v[3]",
        ] {
            assert!(s.parse::<HookName>().is_err(), "{s}");
        }
    }

    #[test]
    fn transformer_lens_names() {
        assert_eq!(
            HookName::block(0, HookSite::ResidIn).transformer_lens(4),
            "blocks.0.hook_resid_pre"
        );
        assert_eq!(
            HookName::block(1, HookSite::AttnQ).transformer_lens(4),
            "blocks.1.attn.hook_q"
        );
        assert_eq!(HookName::FinalResid.transformer_lens(4), "blocks.3.hook_resid_post");
    }

    #[test]
    fn transformer_lens_names_parse_back() {
        for h in HookName::all(4) {
            assert_eq!(HookName::parse_any(&h.transformer_lens(4), 4), Ok(h), "{h}");
            assert_eq!(HookName::parse_any(&h.to_string(), 4), Ok(h));
        }
        assert_eq!(
            HookName::parse_any("blocks.1.hook_resid_post", 4),
            Ok(HookName::block(2, HookSite::ResidIn))
        );
        assert_eq!(
            HookName::parse_any("blocks.2.attn.hook_pattern", 4),
            Ok(HookName::block(2, HookSite::AttnPattern))
        );
        for s in [
            "blocks.4.hook_resid_post",
            "blocks.x.attn.hook_q",
            "blocks.1.attn.hook_w",
            "blocks.1",
        ] {
            assert!(HookName::parse_any(s, 4).is_err(), "{s}");
        }
    }
}
