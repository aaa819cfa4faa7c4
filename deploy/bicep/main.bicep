// plmon as an Azure Function on the Flex Consumption plan, with its storage (state tables, event queue,
// dead letters, deployment package, the shared inventory container and the shard queue of issue 15), a
// user-assigned managed identity, Key Vault-referenced secrets and Event Grid for this subscription. Reader at
// management-group scope is a separate deployment (mg-reader.bicep). Commands: docs/deploy.md.
targetScope = 'resourceGroup'

@description('Azure region of the Function app and storage.')
param location string = resourceGroup().location

@description('Short lower-case prefix for resource names (3-11 letters and digits).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'plmon'

@description('Management group whose subscriptions plmon collects (its Reader assignment: mg-reader.bicep).')
param managementGroupId string

@description('Key Vault holding the alert secrets; plmon\'s identity gets Key Vault Secrets User on it.')
param keyVaultName string

@description('Secret names in that vault: the webhook URL and its HMAC signing secret.')
param webhookUrlSecretName string = 'plmon-webhook-url'
param webhookSigningSecretName string = 'plmon-webhook-secret'

@description('Event subscriptions from `plmon deploy event-filters` (pass the generated parameters file).')
param eventFilters array

@description('Existing Microsoft.Resources.Subscriptions system topic of this subscription (only one is allowed), in this resource group; empty: create one.')
param existingSystemTopicName string = ''

@description('queue (default): Event Grid -> Storage queue -> queue trigger; works when the Function app is private-endpoint-only. function: Event Grid pushes to the Event Grid trigger.')
@allowed(['queue', 'function'])
param deliveryMode string = 'queue'

@description('Full collection schedule (NCRONTAB, six fields).')
param collectionSchedule string = '0 */30 * * * *'

@description('Resource id of a Log Analytics workspace (Microsoft Sentinel\'s) to send alerts to as rows of PlmonFindings_CL (monitor.bicep: table, data collection rule, role); empty: none.')
param logAnalyticsWorkspaceId string = ''

@description('Flex Consumption scale-out limit and instance size. Instances share one inventory (blob container) and one schedule (a blob lease): a cold instance loads the published collection instead of reading ARM, and only the lease holder runs the scheduled collection, so more instances do not multiply ARM reads.')
param maximumInstanceCount int = 40
@allowed([2048, 4096])
param instanceMemoryMB int = 2048

var suffix = uniqueString(resourceGroup().id)
var storageName = take('${namePrefix}${suffix}', 24)
var eventQueueName = 'plmon-events'
var deadLetterContainerName = 'eventgrid-deadletter'
var deploymentContainerName = 'app-package'
// Scale-out (issue 15), named as plmon derives them from state.url's Table prefix ('plmon' in
// deploy/azure-function/plmon.yaml): <prefix>-inventory and <prefix>-shards.
var inventoryContainerName = 'plmon-inventory'
var shardQueueName = 'plmon-shards'
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-identity'
  location: location
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // identity only: the Function, its triggers and plmon's state use Entra ID
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    networkAcls: {
      defaultAction: 'Allow' // tighten to Deny + private endpoints; keep bypass for Event Grid delivery
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
}

// The shared inventory: published collections (segments, manifests, the current.json pointer), re-read patches
// and the schedule lease blob. Private like every container here (allowBlobPublicAccess: false).
resource inventoryContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: inventoryContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource eventQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: eventQueueName
}

// Shards of a full collection (issue 15 item 3, the fan-out: plmon creates and reads it; no producer yet).
resource shardQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: shardQueueName
}

// Data-plane roles on this account only (no account keys). Each is the least the identity needs:
// - Storage Blob Data Owner: the Functions host (AzureWebJobsStorage, its timer and singleton locks) and the
//   deployment package need it on the account; plmon's inventory container and schedule lease (blob leases,
//   conditional writes) are covered by it, so no container-scoped role is added.
// - Storage Queue Data Contributor: the event queue (queue trigger) and the shard queue (send, receive,
//   update visibility, delete; plmon creates the queue if missing).
// - Storage Table Data Contributor: plmon's state, intake, collection book and patch index tables.
resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]: {
  name: guid(storage.id, identity.id, role)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource vaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${namePrefix}-plan'
  location: location
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: '${namePrefix}-${suffix}'
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [
        // Host storage through the identity (no account key anywhere).
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
        // The queue trigger's connection (PLMON_QUEUE) and queue.
        { name: 'PLMON_QUEUE__queueServiceUri', value: storage.properties.primaryEndpoints.queue }
        { name: 'PLMON_QUEUE__credential', value: 'managedidentity' }
        { name: 'PLMON_QUEUE__clientId', value: identity.properties.clientId }
        { name: 'PLMON_EVENT_QUEUE', value: eventQueueName }
        // Scale-out (issue 15): the shared inventory container and the shard queue (wiring.py reads both; an
        // instance names itself by the platform's WEBSITE_INSTANCE_ID, else HOSTNAME; no setting needed).
        { name: 'PLMON_INVENTORY_CONTAINER', value: inventoryContainer.name }
        { name: 'PLMON_SHARD_QUEUE', value: shardQueue.name }
        { name: 'PLMON_COLLECTION_SCHEDULE', value: collectionSchedule }
        // plmon itself: config shipped with the app, state in this account's tables, ARM through the identity.
        { name: 'PLMON_CONFIG', value: 'plmon.yaml' }
        { name: 'PLMON_STATE_ACCOUNT', value: storage.name }
        { name: 'PLMON_MANAGEMENT_GROUP', value: managementGroupId }
        { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
        // Secrets: Key Vault references resolved by the platform with keyVaultReferenceIdentity.
        { name: 'PLMON_WEBHOOK_URL', value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${webhookUrlSecretName})' }
        { name: 'PLMON_WEBHOOK_SECRET', value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${webhookSigningSecretName})' }
      ]
    }
  }
  dependsOn: [
    storageRoles
    vaultRole
  ]
}

module eventGrid 'eventgrid.bicep' = {
  name: 'plmon-eventgrid'
  params: {
    existingSystemTopicName: existingSystemTopicName
    eventFilters: eventFilters
    deliveryMode: deliveryMode
    storageAccountId: storage.id
    eventQueueName: eventQueue.name
    deadLetterContainerName: deadLetterContainer.name
    functionAppId: functionApp.id
  }
}

// Alerts to Azure Monitor Logs / Sentinel (issue 16), in the workspace's own subscription and resource group.
module monitor 'monitor.bicep' = if (!empty(logAnalyticsWorkspaceId)) {
  name: 'plmon-monitor'
  scope: resourceGroup(split(logAnalyticsWorkspaceId, '/')[2], split(logAnalyticsWorkspaceId, '/')[4])
  params: {
    workspaceName: last(split(logAnalyticsWorkspaceId, '/'))
    principalId: identity.properties.principalId
  }
}

output functionAppName string = functionApp.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
output storageAccountName string = storage.name
output systemTopicName string = eventGrid.outputs.systemTopicName
// The azure-monitor channel's keys (empty without a workspace): endpoint, rule_id, stream.
output logsIngestionEndpoint string = empty(logAnalyticsWorkspaceId) ? '' : monitor.outputs.logsIngestionEndpoint
output dcrImmutableId string = empty(logAnalyticsWorkspaceId) ? '' : monitor.outputs.dcrImmutableId
