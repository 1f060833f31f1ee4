//! Canonical node ids: `<layer>.<site>[<index>]` (e.g. `2.attn.v[44]`) or `final_resid[<index>]`, built from the
//! reference's hook names so that they round-trip through strings and files; and SAE features,
//! `<hook>.sae[<latent>]` (e.g. `1.resid_mid.sae[123]`, `final_resid.sae[5]`): latent `latent` of the sparse
//! autoencoder that reads `hook`. A model has at most one SAE per hook in a run, so the hook names the SAE.

use std::fmt;
use std::str::FromStr;

use crate::model::hook_name::HookNameError;
use crate::model::{HookName, HookSite};

/// The pruning-node sites of a block (spec B), plus `final_resid` after the last block: the subset of the model's
/// hook points ([`HookName`]) that carries circuit nodes, spelled by the model's one name table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Site {
    /// `attn.act_in`: the normalised input of attention (width `d_model_in`).
    AttnActIn,
    /// `attn.q`: query channels (width `n_head * d_head`).
    AttnQ,
    /// `attn.k`: key channels (width `n_head * d_head`).
    AttnK,
    /// `attn.v`: value channels (width `n_head * d_head`).
    AttnV,
    /// `attn.resid_delta`: what attention adds to the residual (width `d_model`).
    AttnResidDelta,
    /// `mlp.act_in`: the normalised input of the MLP (width `d_model_in`).
    MlpActIn,
    /// `mlp.post_act`: MLP neurons after the nonlinearity (width `d_mlp`).
    MlpPostAct,
    /// `mlp.resid_delta`: what the MLP adds to the residual (width `d_model`).
    MlpResidDelta,
    /// `final_resid`: the residual after the last block (width `d_model`); has no layer.
    FinalResid,
    /// `<hook>.sae`: the latents (features) of a sparse autoencoder reading the hook at this block site, or
    /// `final_resid` when None (the node then has no layer). Its width is the SAE's, which the model's config
    /// does not know; not among [`Site::ALL`], which lists the model's own channel sites.
    Sae(Option<HookSite>),
}

/// The suffix that turns a hook name into the name of an SAE's latents there: `1.resid_mid` → `1.resid_mid.sae`.
pub const SAE_SUFFIX: &str = ".sae";

/// The name of the latents of an SAE on `hook` (`1.resid_mid.sae`): the group of its features, under which scans
/// and recordings keep them.
pub fn sae_group(hook: impl fmt::Display) -> String {
    format!("{hook}{SAE_SUFFIX}")
}

impl Site {
    /// Every site, in forward order within a block, `final_resid` last.
    pub const ALL: [Site; 9] = [
        Site::AttnActIn,
        Site::AttnQ,
        Site::AttnK,
        Site::AttnV,
        Site::AttnResidDelta,
        Site::MlpActIn,
        Site::MlpPostAct,
        Site::MlpResidDelta,
        Site::FinalResid,
    ];

    /// The block-relative hook name (`attn.q`), or `final_resid`; `sae` for SAE latents (whose full name,
    /// `1.resid_mid.sae`, is [`NodeId::group`]).
    pub fn name(self) -> &'static str {
        match self {
            Site::Sae(_) => "sae",
            _ => match self.hook_site() {
                Some(site) => site.name(),
                None => crate::model::hook_name::FINAL_RESID,
            },
        }
    }

    /// The model's hook site of a block site (None for `final_resid`, which lies after the blocks); for SAE
    /// latents, the site of the hook the SAE reads.
    pub const fn hook_site(self) -> Option<HookSite> {
        Some(match self {
            Site::AttnActIn => HookSite::AttnActIn,
            Site::AttnQ => HookSite::AttnQ,
            Site::AttnK => HookSite::AttnK,
            Site::AttnV => HookSite::AttnV,
            Site::AttnResidDelta => HookSite::AttnResidDelta,
            Site::MlpActIn => HookSite::MlpActIn,
            Site::MlpPostAct => HookSite::MlpPostAct,
            Site::MlpResidDelta => HookSite::MlpResidDelta,
            Site::FinalResid => return None,
            Site::Sae(site) => return site,
        })
    }

    /// Whether the site is an SAE's latents rather than the model's own channels.
    pub const fn is_sae(self) -> bool {
        matches!(self, Site::Sae(_))
    }

    /// The node site at a model hook site (None for hooks without pruning nodes, e.g. `resid_in`).
    pub fn from_hook_site(site: HookSite) -> Option<Site> {
        Site::ALL.into_iter().find(|s| s.hook_site() == Some(site))
    }

    /// The hook this site lives at in block `layer` (`layer` is ignored for `final_resid`).
    pub fn hook(self, layer: usize) -> HookName {
        match self.hook_site() {
            Some(site) => HookName::block(layer, site),
            None => HookName::FinalResid,
        }
    }

    /// Whether the site is a query, key or value (whose channels belong to a head).
    pub fn is_qkv(self) -> bool {
        matches!(self, Site::AttnQ | Site::AttnK | Site::AttnV)
    }

    /// The number of channels at this site in a model of config `cfg` (spec B); None for SAE latents, whose
    /// count is the SAE's.
    pub fn width(self, cfg: &crate::model::Config) -> Option<usize> {
        Some(match self {
            Site::AttnActIn | Site::MlpActIn => cfg.d_model_in(),
            Site::AttnQ | Site::AttnK | Site::AttnV => cfg.attn_width(),
            Site::AttnResidDelta | Site::MlpResidDelta | Site::FinalResid => cfg.d_model,
            Site::MlpPostAct => cfg.d_mlp,
            Site::Sae(_) => return None,
        })
    }

    /// Whether the site belongs to the attention sublayer (false for MLP sites and `final_resid`).
    pub fn is_attn(self) -> bool {
        matches!(
            self,
            Site::AttnActIn | Site::AttnQ | Site::AttnK | Site::AttnV | Site::AttnResidDelta
        )
    }

    /// The site of a block-relative hook name such as `attn.q`.
    pub fn from_name(name: &str) -> Option<Site> {
        Site::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// One channel at one site: a circuit node. Its canonical string (`2.attn.v[44]`) round-trips through
/// `Display`/`FromStr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// None only for `final_resid`.
    pub layer: Option<usize>,
    /// Where in the block the channel is.
    pub site: Site,
    /// The channel index within the site's width.
    pub index: usize,
}

/// Why a well-formed node id does not exist in a given model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeCheckError {
    /// The node's layer is beyond the model's last.
    #[error("node `{node}`: layer {layer} does not exist (the model has {n_layer} layers)")]
    NoSuchLayer {
        /// The node.
        node: NodeId,
        /// Its layer.
        layer: usize,
        /// The model's layer count.
        n_layer: usize,
    },
    /// The node's channel index is not below its site's width.
    #[error("node `{node}`: index {} is out of range (`{hook}` has {width} channels)", node.index)]
    IndexOutOfRange {
        /// The node.
        node: NodeId,
        /// The hook the node reads (for a feature, the SAE's latents, `1.resid_mid.sae`).
        hook: String,
        /// The channel count of that hook in the model (for a feature, the SAE's latents).
        width: usize,
    },
    /// A feature node where no SAE is loaded.
    #[error("node `{node}` is an SAE feature, and no SAE is loaded (pass --sae DIR with an SAE on `{}`)", node.hook())]
    NoSae {
        /// The node.
        node: NodeId,
    },
    /// A feature node of a hook other than the loaded SAE's.
    #[error("node `{node}` is a feature of an SAE on `{}`, but the SAE loaded reads `{sae_hook}`", node.hook())]
    OtherSaeHook {
        /// The node.
        node: NodeId,
        /// The hook of the SAE that is loaded.
        sae_hook: HookName,
    },
}

/// A string that is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid node id `{input}`: {problem} (expected e.g. `2.attn.v[44]`, `0.mlp.post_act[985]`, `final_resid[7]` \
     or an SAE feature such as `1.resid_mid.sae[123]`)"
)]
pub struct NodeIdError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it.
    #[source]
    pub problem: NodeIdProblem,
}

/// What is wrong with a node id (the `problem` of [`NodeIdError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdProblem {
    /// No `[index]` after the hook.
    #[error("missing `[index]`")]
    MissingIndex,
    /// The `[index]` is not a number.
    #[error("the index is not a non-negative integer")]
    IndexNotInteger,
    /// No `L.` before the site.
    #[error("missing the layer number")]
    MissingLayer,
    /// The `L` of `L.site` is not a number.
    #[error("the layer is not a number")]
    LayerNotNumber,
    /// The site is none of the node sites.
    #[error("unknown site")]
    UnknownSite,
    /// A positioned node without `@position`.
    #[error("missing `@position`")]
    MissingPosition,
    /// The `@position` is not a number.
    #[error("the position is not a non-negative integer")]
    PositionNotInteger,
    /// A TransformerLens hook name that is no hook.
    #[error(transparent)]
    Hook(#[from] HookNameError),
    /// A part of a TransformerLens `[head:channel]` or `[index]` is not a number.
    #[error("the {what} `{text}` is not a non-negative integer")]
    NotInteger {
        /// `head`, `channel` or `index`.
        what: &'static str,
        /// The text given.
        text: String,
    },
    /// A `[head:channel]` channel at or past the head width.
    #[error("channel {channel} is beyond a head's {d_head} channels")]
    ChannelBeyondHead {
        /// The channel given.
        channel: usize,
        /// The model's head width.
        d_head: usize,
    },
    /// `[head:channel]` on a hook that has no heads.
    #[error("`[head:channel]` is only for q, k and v")]
    NotPerHead,
    /// `<hook>.sae` where the hook is no hook, or one without channels (attention patterns).
    #[error("`{hook}` is not a hook an SAE can read (expected e.g. `1.resid_mid.sae`, `final_resid.sae`)")]
    NoSaeHook {
        /// The hook part as given.
        hook: String,
    },
    /// A hook that holds no circuit nodes (`hook_resid_pre`, `hook_z`, ...).
    #[error(
        "`{hook}` (ours: `{ours}`) holds no circuit nodes; nodes live at attention inputs, q, k, v, attention \
         outputs, MLP inputs, neurons and outputs, and the final residual"
    )]
    NoNodes {
        /// The hook as given.
        hook: String,
        /// Its name in our spelling.
        ours: HookName,
    },
}

impl NodeId {
    /// A node of a block (`layer` 0-based); not for `final_resid`, which has no layer.
    pub fn new(layer: usize, site: Site, index: usize) -> Self {
        debug_assert!(site != Site::FinalResid);
        NodeId {
            layer: Some(layer),
            site,
            index,
        }
    }

    /// The `final_resid[index]` node.
    pub fn final_resid(index: usize) -> Self {
        NodeId {
            layer: None,
            site: Site::FinalResid,
            index,
        }
    }

    /// Latent `latent` of the SAE reading `hook`: `1.resid_mid.sae[123]`. None for a hook without channels
    /// (attention patterns).
    pub fn feature(hook: HookName, latent: usize) -> Option<Self> {
        match hook {
            HookName::Block {
                site: HookSite::AttnPattern,
                ..
            } => None,
            HookName::Block { layer, site } => Some(NodeId {
                layer: Some(layer),
                site: Site::Sae(Some(site)),
                index: latent,
            }),
            HookName::FinalResid => Some(NodeId {
                layer: None,
                site: Site::Sae(None),
                index: latent,
            }),
        }
    }

    /// Whether this is an SAE feature rather than a channel of the model.
    pub fn is_feature(&self) -> bool {
        self.site.is_sae()
    }

    /// The hook this node lives at (for a feature, the hook its SAE reads).
    pub fn hook(&self) -> HookName {
        match self.layer {
            Some(l) => self.site.hook(l),
            None => HookName::FinalResid,
        }
    }

    /// The reference's hook name this node lives at, e.g. `2.attn.v` (for a feature, the hook its SAE reads).
    pub fn hook_name(&self) -> String {
        self.hook().to_string()
    }

    /// The name of the family of channels the node belongs to: its hook for a channel (`2.attn.v`), the SAE's
    /// latents at its hook for a feature (`1.resid_mid.sae`). Scans and recordings key nodes by it, so that a
    /// feature's latent never reads as the hook's channel of the same index.
    pub fn group(&self) -> String {
        match self.site {
            Site::Sae(_) => sae_group(self.hook()),
            _ => self.hook_name(),
        }
    }

    /// The node at channel `index` of a typed hook; None for a hook that holds no pruning nodes.
    pub fn at_hook(hook: HookName, index: usize) -> Option<Self> {
        match hook {
            HookName::FinalResid => Some(NodeId::final_resid(index)),
            HookName::Block { layer, site } => Some(NodeId::new(layer, Site::from_hook_site(site)?, index)),
        }
    }

    /// The node at channel `index` of hook `hook` (e.g. `2.attn.v`, `final_resid`); None for a hook that holds
    /// no pruning nodes.
    pub fn from_hook(hook: &str, index: usize) -> Option<Self> {
        if hook == Site::FinalResid.name() {
            return Some(NodeId::final_resid(index));
        }
        let (layer, site) = hook.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let site = Site::from_name(site).filter(|s| *s != Site::FinalResid)?;
        Some(NodeId::new(layer, site, index))
    }

    /// Reads a node id spelled ours (`2.attn.v[44]`) or TransformerLens's way (`blocks.2.attn.hook_v[44]`,
    /// `blocks.0.mlp.hook_post[7]`, `blocks.1.hook_resid_post[3]` after the last block for `final_resid[3]`), for
    /// a model of `n_layer` blocks with heads of `d_head` channels. At TransformerLens's q, k and v, `[h:c]` is
    /// head h's channel c (its `[head, d_head]` indexing), the node `[h·d_head + c]`; a plain `[i]` is the
    /// flattened index, as ours. Hooks that hold no nodes (`hook_resid_pre`, `hook_z`, ...) are refused by name.
    pub fn parse_for(s: &str, n_layer: usize, d_head: usize) -> Result<NodeId, NodeIdError> {
        let text = s.trim();
        if let Ok(id) = text.parse::<NodeId>() {
            return Ok(id);
        }
        let err = |problem: NodeIdProblem| NodeIdError {
            input: text.to_string(),
            problem,
        };
        let (hook, idx) = split_indexed(text).ok_or_else(|| err(NodeIdProblem::MissingIndex))?;
        if !hook.starts_with("blocks.") {
            // Not TransformerLens's spelling either: ours says best what is wrong.
            return text.parse::<NodeId>();
        }
        if let Some(sae_hook) = hook.strip_suffix(SAE_SUFFIX) {
            // `blocks.1.hook_resid_mid.sae[3]`: a feature of the SAE on that hook.
            let name = HookName::parse_any(sae_hook, n_layer).map_err(|e| err(e.into()))?;
            let latent = idx.trim().parse().map_err(|_| {
                err(NodeIdProblem::NotInteger {
                    what: "latent",
                    text: idx.to_string(),
                })
            })?;
            return NodeId::feature(name, latent).ok_or_else(|| {
                err(NodeIdProblem::NoSaeHook {
                    hook: sae_hook.to_string(),
                })
            });
        }
        let name = HookName::parse_any(hook, n_layer).map_err(|e| err(e.into()))?;
        let number = |t: &str, what: &'static str| -> Result<usize, NodeIdError> {
            t.trim().parse().map_err(|_| {
                err(NodeIdProblem::NotInteger {
                    what,
                    text: t.to_string(),
                })
            })
        };
        let index = match idx.split_once(':') {
            Some((h, c)) if name.is_per_head() => {
                let (h, c) = (number(h, "head")?, number(c, "channel")?);
                if c >= d_head {
                    return Err(err(NodeIdProblem::ChannelBeyondHead { channel: c, d_head }));
                }
                h * d_head + c
            }
            Some(_) => return Err(err(NodeIdProblem::NotPerHead)),
            None => number(idx, "index")?,
        };
        NodeId::at_hook(name, index).ok_or_else(|| {
            err(NodeIdProblem::NoNodes {
                hook: hook.to_string(),
                ours: name,
            })
        })
    }

    /// The channel count of this node's site in `cfg` (None for a feature: its SAE knows).
    pub fn width(&self, cfg: &crate::model::Config) -> Option<usize> {
        self.site.width(cfg)
    }

    /// Checks that this node exists in a model of config `cfg`; the error says why not. A feature needs its
    /// SAE: see [`NodeId::check_with_sae`].
    pub fn check(&self, cfg: &crate::model::Config) -> Result<(), NodeCheckError> {
        self.check_with_sae(cfg, None)
    }

    /// Like [`NodeId::check`], with the SAE loaded beside the model as (the hook it reads, its latent count):
    /// a feature must be of that SAE's hook and below its latent count.
    pub fn check_with_sae(
        &self,
        cfg: &crate::model::Config,
        sae: Option<(HookName, usize)>,
    ) -> Result<(), NodeCheckError> {
        if let Some(layer) = self.layer {
            if layer >= cfg.n_layer {
                return Err(NodeCheckError::NoSuchLayer {
                    node: *self,
                    layer,
                    n_layer: cfg.n_layer,
                });
            }
        }
        let Some(width) = self.width(cfg) else {
            return self.check_feature(sae);
        };
        if self.index >= width {
            return Err(NodeCheckError::IndexOutOfRange {
                node: *self,
                hook: self.group(),
                width,
            });
        }
        Ok(())
    }

    /// Checks a feature against the SAE loaded, as (the hook it reads, its latent count): the feature must be
    /// of that hook (which the SAE's own check placed in the model) and below the latent count. Channels pass.
    pub fn check_feature(&self, sae: Option<(HookName, usize)>) -> Result<(), NodeCheckError> {
        if !self.is_feature() {
            return Ok(());
        }
        let n_latents = match sae {
            None => return Err(NodeCheckError::NoSae { node: *self }),
            Some((hook, _)) if hook != self.hook() => {
                return Err(NodeCheckError::OtherSaeHook {
                    node: *self,
                    sae_hook: hook,
                })
            }
            Some((_, n)) => n,
        };
        if self.index >= n_latents {
            return Err(NodeCheckError::IndexOutOfRange {
                node: *self,
                hook: self.group(),
                width: n_latents,
            });
        }
        Ok(())
    }

    /// A sort key in forward (computation) order: layer, then the site's position in the block; a feature
    /// sorts after the block's channels, by the position of the hook its SAE reads.
    pub fn forward_order(&self) -> (usize, usize, usize) {
        let site_pos = match self.site {
            Site::Sae(site) => {
                9 + site.map_or(HookSite::ALL.len(), |s| {
                    HookSite::ALL
                        .iter()
                        .position(|x| *x == s)
                        .unwrap_or(HookSite::ALL.len())
                })
            }
            Site::AttnActIn => 0,
            Site::AttnQ => 1,
            Site::AttnK => 2,
            Site::AttnV => 3,
            Site::AttnResidDelta => 4,
            Site::MlpActIn => 5,
            Site::MlpPostAct => 6,
            Site::MlpResidDelta => 7,
            Site::FinalResid => 8,
        };
        (self.layer.unwrap_or(usize::MAX), site_pos, self.index)
    }

    /// (head, channel within head) for q/k/v nodes.
    pub fn head_channel(&self, d_head: usize) -> Option<(usize, usize)> {
        (self.site.is_qkv() && d_head > 0).then(|| (self.index / d_head, self.index % d_head))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.group(), self.index)
    }
}

/// Splits `hook[index]` into the hook name and the index text.
pub fn split_indexed(s: &str) -> Option<(&str, &str)> {
    let open = s.find('[')?;
    let inner = s[open + 1..].strip_suffix(']')?;
    Some((&s[..open], inner))
}

impl FromStr for NodeId {
    type Err = NodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |problem: NodeIdProblem| NodeIdError {
            input: s.to_string(),
            problem,
        };
        let (hook, idx) = split_indexed(s.trim()).ok_or_else(|| err(NodeIdProblem::MissingIndex))?;
        let index: usize = idx.parse().map_err(|_| err(NodeIdProblem::IndexNotInteger))?;
        if let Some(sae_hook) = hook.strip_suffix(SAE_SUFFIX) {
            let no_hook = || {
                err(NodeIdProblem::NoSaeHook {
                    hook: sae_hook.to_string(),
                })
            };
            let name: HookName = sae_hook.parse().map_err(|_| no_hook())?;
            return NodeId::feature(name, index).ok_or_else(no_hook);
        }
        if hook == Site::FinalResid.name() {
            return Ok(NodeId::final_resid(index));
        }
        let (layer, site) = hook.split_once('.').ok_or_else(|| err(NodeIdProblem::MissingLayer))?;
        let layer: usize = layer.parse().map_err(|_| err(NodeIdProblem::LayerNotNumber))?;
        let site = Site::ALL
            .into_iter()
            .find(|x| x.name() == site && *x != Site::FinalResid)
            .ok_or_else(|| err(NodeIdProblem::UnknownSite))?;
        Ok(NodeId::new(layer, site, index))
    }
}

impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A node at one token position: `1.mlp.post_act[98]@12`, the nodes of per-prompt attribution graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PositionedNode {
    /// The channel.
    pub node: NodeId,
    /// The token position (0-based).
    pub pos: usize,
}

impl fmt::Display for PositionedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node, self.pos)
    }
}

impl FromStr for PositionedNode {
    type Err = NodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (node, pos) = s.rsplit_once('@').ok_or_else(|| NodeIdError {
            input: s.to_string(),
            problem: NodeIdProblem::MissingPosition,
        })?;
        let pos = pos.parse().map_err(|_| NodeIdError {
            input: s.to_string(),
            problem: NodeIdProblem::PositionNotInteger,
        })?;
        Ok(PositionedNode {
            node: node.parse()?,
            pos,
        })
    }
}

impl serde::Serialize for PositionedNode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PositionedNode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positioned_round_trips() {
        for s in ["1.mlp.post_act[98]@12", "final_resid[3]@0", "0.attn.v[44]@7"] {
            let n: PositionedNode = s.parse().unwrap();
            assert_eq!(n.to_string(), s);
        }
        assert_eq!("1.mlp.post_act[98]@12".parse::<PositionedNode>().unwrap().pos, 12);
        for bad in ["1.mlp.post_act[98]", "1.mlp.post_act[98]@x", "1.mlp.nope[98]@1", "@3"] {
            assert!(bad.parse::<PositionedNode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips() {
        for s in [
            "2.attn.v[44]",
            "0.mlp.post_act[985]",
            "final_resid[1249]",
            "11.attn.act_in[0]",
        ] {
            let id: NodeId = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
        }
        let id: NodeId = "3.attn.q[37]".parse().unwrap();
        assert_eq!(id.head_channel(16), Some((2, 5)));
        assert_eq!(id.hook_name(), "3.attn.q");
        assert_eq!(id.hook(), HookName::block(3, HookSite::AttnQ));
    }

    /// Every node site is a model hook site, and back; `final_resid` is the model's final hook.
    #[test]
    fn sites_are_model_hooks() {
        for site in Site::ALL {
            let id = if site == Site::FinalResid {
                NodeId::final_resid(5)
            } else {
                NodeId::new(2, site, 5)
            };
            assert_eq!(id.hook().to_string(), id.hook_name());
            assert_eq!(NodeId::at_hook(id.hook(), 5), Some(id));
            assert_eq!(NodeId::from_hook(&id.hook_name(), 5), Some(id));
        }
        assert_eq!(NodeId::at_hook(HookName::block(0, HookSite::ResidMid), 1), None);
    }

    #[test]
    fn transformer_lens_spellings_resolve() {
        let p = |s: &str| NodeId::parse_for(s, 4, 16);
        assert_eq!(p("blocks.2.attn.hook_v[44]"), Ok(NodeId::new(2, Site::AttnV, 44)));
        assert_eq!(p("blocks.3.attn.hook_q[2:5]"), Ok(NodeId::new(3, Site::AttnQ, 37)));
        assert_eq!(
            p(" blocks.0.mlp.hook_post[7] "),
            Ok(NodeId::new(0, Site::MlpPostAct, 7))
        );
        assert_eq!(
            p("blocks.1.hook_mlp_out[3]"),
            Ok(NodeId::new(1, Site::MlpResidDelta, 3))
        );
        assert_eq!(p("blocks.3.hook_resid_post[9]"), Ok(NodeId::final_resid(9)));
        assert_eq!(p("1.attn.k[3]"), Ok(NodeId::new(1, Site::AttnK, 3)));
        for bad in [
            "blocks.1.hook_resid_pre[3]",
            "blocks.1.attn.hook_z[3]",
            "blocks.1.attn.hook_q[1:16]",
            "blocks.1.mlp.hook_post[1:2]",
            "blocks.4.hook_resid_post[0]",
            "blocks.1.attn.hook_q[x]",
            "blocks.1.attn.hook_q",
            "2.attn.y[1]",
        ] {
            let e = p(bad).expect_err(bad);
            assert!(e.to_string().contains(bad.trim()), "{e}");
        }
    }

    #[test]
    fn features_round_trip() {
        for s in [
            "1.resid_mid.sae[123]",
            "0.resid_in.sae[0]",
            "final_resid.sae[5]",
            "1.mlp.post_act.sae[7]",
            "0.attn.resid_delta.sae[2]",
        ] {
            let id: NodeId = s.parse().unwrap();
            assert!(id.is_feature(), "{s}");
            assert_eq!(id.to_string(), s);
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<NodeId>(&format!("\"{s}\"")).unwrap(), id);
        }
        let f: NodeId = "1.resid_mid.sae[123]".parse().unwrap();
        assert_eq!(f, NodeId::feature(HookName::block(1, HookSite::ResidMid), 123).unwrap());
        assert_eq!(f.hook(), HookName::block(1, HookSite::ResidMid));
        assert_eq!(f.hook_name(), "1.resid_mid");
        assert_eq!(f.group(), "1.resid_mid.sae");
        assert_eq!((f.layer, f.index), (Some(1), 123));
        let last: NodeId = "final_resid.sae[5]".parse().unwrap();
        assert_eq!((last.layer, last.hook()), (None, HookName::FinalResid));
        // A feature is never the channel of the same index at its hook.
        let channel: NodeId = "1.mlp.post_act[7]".parse().unwrap();
        let feature: NodeId = "1.mlp.post_act.sae[7]".parse().unwrap();
        assert_ne!(channel, feature);
        assert_ne!(channel.group(), feature.group());
        assert!(!channel.is_feature());
        assert_eq!(NodeId::feature(HookName::block(0, HookSite::AttnPattern), 1), None);
        // Positioned features, as attribution graphs spell nodes.
        let p: PositionedNode = "1.resid_mid.sae[3]@4".parse().unwrap();
        assert_eq!(
            (p.node, p.pos),
            (NodeId::feature(HookName::block(1, HookSite::ResidMid), 3).unwrap(), 4)
        );
        assert_eq!(p.to_string(), "1.resid_mid.sae[3]@4");
        // Features sort after their block's channels and before the next block's.
        let order = |s: &str| s.parse::<NodeId>().unwrap().forward_order();
        assert!(order("1.mlp.resid_delta[0]") < order("1.resid_mid.sae[0]"));
        assert!(order("1.resid_mid.sae[0]") < order("2.attn.act_in[0]"));
        assert!(order("1.resid_in.sae[9]") < order("1.resid_mid.sae[0]"));
    }

    #[test]
    fn transformer_lens_feature_spellings_resolve() {
        let p = |s: &str| NodeId::parse_for(s, 4, 16);
        let mid = NodeId::feature(HookName::block(1, HookSite::ResidMid), 3).unwrap();
        assert_eq!(p("blocks.1.hook_resid_mid.sae[3]"), Ok(mid));
        assert_eq!(p("1.resid_mid.sae[3]"), Ok(mid));
        assert_eq!(
            p("blocks.3.hook_resid_post.sae[2]"),
            Ok(NodeId::feature(HookName::FinalResid, 2).unwrap())
        );
        assert_eq!(
            p("blocks.0.hook_resid_post.sae[2]"),
            Ok(NodeId::feature(HookName::block(1, HookSite::ResidIn), 2).unwrap())
        );
        for bad in [
            "blocks.1.hook_nope.sae[3]",
            "blocks.1.hook_resid_mid.sae[x]",
            "blocks.1.attn.hook_pattern.sae[0]",
        ] {
            let e = p(bad).expect_err(bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn rejects_bad_features() {
        let problem = |s: &str| s.parse::<NodeId>().unwrap_err().problem;
        for bad in [
            "1.resid_foo.sae[3]",
            "x.resid_mid.sae[3]",
            "1.attn.pattern.sae[0]",
            ".sae[1]",
        ] {
            assert!(matches!(problem(bad), NodeIdProblem::NoSaeHook { .. }), "{bad}");
            let msg = bad.parse::<NodeId>().unwrap_err().to_string();
            assert!(!msg.contains('\n') && msg.contains(bad), "{msg}");
        }
        assert_eq!(problem("1.resid_mid.sae[-1]"), NodeIdProblem::IndexNotInteger);
        assert_eq!(problem("1.resid_mid.sae"), NodeIdProblem::MissingIndex);
    }

    #[test]
    fn features_are_checked_against_the_loaded_sae() {
        let cfg = crate::model::Config::from_json_str(
            r#"{"n_layer": 2, "d_model": 16, "n_head": 4, "d_head": 4, "d_mlp": 64, "vocab_size": 128,
            "block_size": 32}"#,
        )
        .unwrap()
        .config;
        let mid = HookName::block(1, HookSite::ResidMid);
        let f = NodeId::feature(mid, 10).unwrap();
        assert_eq!(f.check(&cfg), Err(NodeCheckError::NoSae { node: f }));
        assert!(f.check(&cfg).unwrap_err().to_string().contains("--sae"));
        assert_eq!(f.check_with_sae(&cfg, Some((mid, 16))), Ok(()));
        let e = f.check_with_sae(&cfg, Some((mid, 10))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `1.resid_mid.sae[10]`: index 10 is out of range (`1.resid_mid.sae` has 10 channels)"
        );
        let other = HookName::block(0, HookSite::ResidMid);
        assert_eq!(
            f.check_with_sae(&cfg, Some((other, 16))),
            Err(NodeCheckError::OtherSaeHook {
                node: f,
                sae_hook: other
            })
        );
        let deep = NodeId::feature(HookName::block(5, HookSite::ResidMid), 0).unwrap();
        assert!(matches!(
            deep.check_with_sae(&cfg, Some((mid, 16))),
            Err(NodeCheckError::NoSuchLayer { layer: 5, .. })
        ));
        // Channels are unaffected by an SAE.
        assert_eq!(
            NodeId::new(1, Site::MlpPostAct, 0).check_with_sae(&cfg, Some((mid, 16))),
            Ok(())
        );
    }

    #[test]
    fn rejects_bad_ids() {
        for s in [
            "2.attn.v",
            "x.attn.v[1]",
            "2.attn.y[1]",
            "2.attn.v[-1]",
            "final_resid[a]",
            "2.final_resid[1]",
        ] {
            assert!(s.parse::<NodeId>().is_err(), "{s}");
        }
        let problem = |s: &str| s.parse::<NodeId>().unwrap_err().problem;
        assert_eq!(problem("2.attn.v"), NodeIdProblem::MissingIndex);
        assert_eq!(problem("x.attn.v[1]"), NodeIdProblem::LayerNotNumber);
        assert_eq!(problem("2.attn.y[1]"), NodeIdProblem::UnknownSite);
        assert_eq!(problem("2.attn.v[-1]"), NodeIdProblem::IndexNotInteger);
        assert_eq!(
            "1.mlp.post_act[2]".parse::<PositionedNode>().unwrap_err().problem,
            NodeIdProblem::MissingPosition
        );
        let tl = |s: &str| NodeId::parse_for(s, 4, 16).unwrap_err().problem;
        assert_eq!(
            tl("blocks.1.attn.hook_q[1:16]"),
            NodeIdProblem::ChannelBeyondHead {
                channel: 16,
                d_head: 16
            }
        );
        assert_eq!(tl("blocks.1.mlp.hook_post[1:2]"), NodeIdProblem::NotPerHead);
        assert!(matches!(tl("blocks.1.attn.hook_z[3]"), NodeIdProblem::NoNodes { .. }));
        assert_eq!(
            tl("blocks.1.attn.hook_q[x]"),
            NodeIdProblem::NotInteger {
                what: "index",
                text: "x".into()
            }
        );
    }
}
