// Event Grid for one subscription: its system topic (only one is allowed per subscription, so an existing
// one is reused when its name is given) and one event subscription per filter set from
// `plmon deploy event-filters` (Event Grid allows 25 advanced-filter values per event subscription).
// Deploy into a resource group of the subscription to watch (main.bicep does it for its own subscription).

@description('Existing Microsoft.Resources.Subscriptions system topic of this subscription, in this resource group; empty: create one.')
param existingSystemTopicName string = ''

@description('Name of the system topic to create when none exists.')
param systemTopicName string = 'plmon-${subscription().subscriptionId}'

@description('Event subscriptions: [{name, operator, key, values}] from `plmon deploy event-filters`.')
param eventFilters array

@description('queue: Event Grid delivers to a Storage queue (works with a private-endpoint-only Function app). function: pushes to the Event Grid trigger.')
@allowed(['queue', 'function'])
param deliveryMode string = 'queue'

@description('Resource id of the storage account holding the event queue and the dead-letter container.')
param storageAccountId string

param eventQueueName string = 'plmon-events'
param deadLetterContainerName string = 'eventgrid-deadletter'

@description('Resource id of the Function app (deliveryMode function only).')
param functionAppId string = ''

var createTopic = empty(existingSystemTopicName)
var topicName = createTopic ? systemTopicName : existingSystemTopicName

resource newTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createTopic) {
  name: systemTopicName
  location: 'global'
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

resource subscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = [for f in eventFilters: {
  name: '${topicName}/plmon-${f.name}'
  dependsOn: [
    newTopic
  ]
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: deliveryMode == 'queue' ? {
      endpointType: 'StorageQueue'
      properties: {
        resourceId: storageAccountId
        queueName: eventQueueName
        queueMessageTimeToLiveInSeconds: 604800
      }
    } : {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/resource_event'
        maxEventsPerBatch: 1
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
        'Microsoft.Resources.ResourceWriteFailure'
        'Microsoft.Resources.ResourceWriteCancel'
        'Microsoft.Resources.ResourceDeleteSuccess'
        'Microsoft.Resources.ResourceDeleteFailure'
        'Microsoft.Resources.ResourceDeleteCancel'
        'Microsoft.Resources.ResourceActionSuccess'
        'Microsoft.Resources.ResourceActionFailure'
        'Microsoft.Resources.ResourceActionCancel'
      ]
      enableAdvancedFilteringOnArrays: true
      advancedFilters: [
        {
          operatorType: f.operator
          key: f.key
          values: f.values
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterDestination: {
      endpointType: 'StorageBlob'
      properties: {
        resourceId: storageAccountId
        blobContainerName: deadLetterContainerName
      }
    }
  }
}]

output systemTopicName string = topicName
output eventSubscriptionCount int = length(eventFilters)
