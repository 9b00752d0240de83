-- Argo CD health check for kubetune.dev/ModelDeployment.
--
-- Install it as `resource.customizations.health.kubetune.dev_ModelDeployment` in the argocd-cm
-- ConfigMap (docs/operations.md, examples/gitops/argocd-cm-patch.yaml). Argo CD runs it with
-- the live object as `obj` in a sandboxed Lua 5.1 without `os` or `io`.
--
--   status.phase                                  Argo CD health
--   (none yet)                                    Progressing  the operator has not seen it yet
--   Pending WaitingForModel Building Deploying    Progressing
--   Ready                                         Healthy
--   Degraded Failed                               Degraded
--   anything else                                 Unknown
--
-- spec.replicas 0 (and no autoscaling) with phase Ready reads Suspended: nothing serves.
-- A status computed for an older spec (status.observedGeneration < metadata.generation) reads
-- Progressing whatever its phase: a rollout of the new spec has not been confirmed yet.
local hs = {}

-- The message of the condition that changed last (RFC 3339 times sort as strings), with its
-- reason; "" when there is none.
local function latest_condition(status)
  local latest = nil
  if status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.message ~= nil and condition.message ~= "" then
        if latest == nil or (condition.lastTransitionTime or "") > (latest.lastTransitionTime or "") then
          latest = condition
        end
      end
    end
  end
  if latest == nil then
    return ""
  end
  if latest.reason ~= nil and latest.reason ~= "" then
    return latest.reason .. ": " .. latest.message
  end
  return latest.message
end

local function join(phase, detail)
  if detail == "" then
    return phase
  end
  return phase .. ": " .. detail
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubetune operator to pick up the deployment"
  return hs
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = string.format("Waiting for the operator to act on generation %d (status is for %d)", generation, observed)
  return hs
end

local phase = status.phase
local spec = obj.spec or {}
if phase == "Ready" then
  if spec.replicas == 0 and spec.autoscaling == nil then
    hs.status = "Suspended"
    hs.message = "Scaled to zero replicas"
  else
    hs.status = "Healthy"
    local parts = {}
    if status.ready ~= nil then
      table.insert(parts, status.ready .. " replicas ready")
    end
    if status.endpoint ~= nil and status.endpoint.http ~= nil then
      table.insert(parts, "serving at " .. status.endpoint.http)
    end
    hs.message = join(phase, table.concat(parts, ", "))
  end
elseif phase == "Degraded" or phase == "Failed" then
  hs.status = "Degraded"
  hs.message = join(phase, latest_condition(status))
elseif phase == "Pending" or phase == "WaitingForModel" or phase == "Building" or phase == "Deploying" then
  hs.status = "Progressing"
  hs.message = join(phase, latest_condition(status))
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
